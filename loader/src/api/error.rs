//! Why a control request failed, typed; it reaches the wire in one place
//! (`From<ApiError> for Response`).
use std::net::IpAddr;

use super::Response;
use crate::{datapath::sync::SyncError, netlink::NetlinkError, state::StateError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("`{spec}` conflicts with published `{holder}`")]
    Conflict { spec: String, holder: String },
    #[error("{what} is not {expected} (see `bpfnet ls`)")]
    NotFound {
        what: String,
        expected: &'static str,
    },
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("cannot persist the desired state: {source}")]
    Persist {
        #[from]
        source: StateError,
    },
    #[error("cannot {what}: {}", list(errors))]
    Datapath {
        what: String,
        errors: Vec<SyncError>,
    },
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
}

/// Every error's message, `; ` between them.
fn list(errors: &[SyncError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A request that cannot be carried out as asked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Invalid {
    #[error("`{veth}` is not a port of bridge `{bridge}`")]
    NotAPort { veth: String, bridge: String },
    #[error("an endpoint needs at least one address")]
    NoAddress,
    #[error("{addr} is given twice")]
    GivenTwice { addr: IpAddr },
    #[error(
        "{addr} is a host address or its subnet's network or broadcast address: no container \
         may have it"
    )]
    Unclaimable { addr: IpAddr },
    #[error("no MAC learned on `{veth}` yet; pass --mac")]
    NoMacLearned { veth: String },
    #[error("several MACs learned on `{veth}`; pass --mac")]
    SeveralMacs { veth: String },
}

impl From<ApiError> for Response {
    fn from(e: ApiError) -> Self {
        Response::Error {
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_request_reaches_the_wire_as_its_message() {
        let e: ApiError = Invalid::NotAPort {
            veth: "vc0".into(),
            bridge: "br1".into(),
        }
        .into();
        assert_eq!(
            Response::from(e),
            Response::Error {
                message: "`vc0` is not a port of bridge `br1`".into()
            }
        );
        let addr: IpAddr = "172.17.0.1".parse().unwrap();
        assert_eq!(
            Invalid::Unclaimable { addr }.to_string(),
            "172.17.0.1 is a host address or its subnet's network or broadcast address: no \
             container may have it"
        );
    }

    #[test]
    fn a_datapath_failure_lists_every_map_error() {
        let e = ApiError::Datapath {
            what: "publish `8080:172.17.0.4:80`".into(),
            errors: vec![
                SyncError::Remove {
                    key: "a".into(),
                    source: aya::maps::MapError::KeyNotFound,
                },
                SyncError::Remove {
                    key: "b".into(),
                    source: aya::maps::MapError::ElementNotFound,
                },
            ],
        };
        let m = e.to_string();
        assert!(
            m.starts_with("cannot publish `8080:172.17.0.4:80`: cannot remove a: "),
            "{m}"
        );
        assert!(m.contains("; cannot remove b: "), "{m}");
    }
}
