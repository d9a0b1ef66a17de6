//! Why a control request failed, typed; it reaches the wire in one place
//! (`From<ApiError> for Response`).
use super::Response;
use crate::{netlink::NetlinkError, state::StateError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("`{spec}` conflicts with published `{holder}`")]
    Conflict { spec: String, holder: String },
    #[error("{what} is not {expected} (see `bpfnet ls`)")]
    NotFound {
        what: String,
        expected: &'static str,
    },
    #[error("{reason}")]
    Invalid { reason: String },
    #[error("cannot persist the desired state: {source}")]
    Persist {
        #[from]
        source: StateError,
    },
    #[error("cannot {what}: {}", errors.join("; "))]
    Datapath { what: String, errors: Vec<String> },
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
}

impl From<ApiError> for Response {
    fn from(e: ApiError) -> Self {
        Response::Error {
            message: e.to_string(),
        }
    }
}
