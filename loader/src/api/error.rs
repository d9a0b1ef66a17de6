//! Why a control request failed, typed; it reaches the wire in one place
//! (`From<ApiError> for Response`).
use std::net::IpAddr;

use super::Response;
use crate::{
    datapath::sync::SyncError, netlink::NetlinkError, spec::PublishSpec, state::StateError,
};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("`{spec}` conflicts with published `{holder}`")]
    Conflict {
        spec: PublishSpec,
        holder: PublishSpec,
    },
    #[error("`{addr}` conflicts with published `endpoint on {veth}`")]
    AddressTaken { addr: IpAddr, veth: String },
    #[error("{missing} (see `bpfnet ls`)")]
    NotFound { missing: Missing },
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("cannot persist the desired state: {source}")]
    Persist {
        #[from]
        source: StateError,
    },
    #[error("cannot {change}: {}", list(errors))]
    Datapath {
        change: Change,
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

/// A change of the datapath a request asked for.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Change {
    #[error("publish `{spec}`")]
    Publish { spec: PublishSpec },
    #[error("unpublish `{spec}`")]
    Unpublish { spec: PublishSpec },
}

/// What a request names that the daemon does not have.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Missing {
    #[error("bridge `{name}` is not managed by bpfnet")]
    Bridge { name: String },
    #[error("`{name}` is not a container veth on a managed bridge")]
    Veth { name: String },
    #[error("`{spec}` is not published")]
    Publish { spec: PublishSpec },
    #[error("{addr} is not a registered endpoint")]
    Endpoint { addr: IpAddr },
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
    fn what_is_missing_or_taken_reads_as_before() {
        let message = |e: ApiError| match Response::from(e) {
            Response::Error { message } => message,
            r => panic!("an error answers as one: {r:?}"),
        };
        let spec: PublishSpec = "8080:172.17.0.4:80".parse().unwrap();
        let holder: PublishSpec = "8080:172.17.0.5:80".parse().unwrap();
        let addr: IpAddr = "172.17.0.4".parse().unwrap();
        for (e, m) in [
            (
                ApiError::Conflict { spec, holder },
                "`8080:172.17.0.4:80/tcp` conflicts with published `8080:172.17.0.5:80/tcp`",
            ),
            (
                ApiError::AddressTaken {
                    addr,
                    veth: "vc1".into(),
                },
                "`172.17.0.4` conflicts with published `endpoint on vc1`",
            ),
            (
                ApiError::NotFound {
                    missing: Missing::Bridge { name: "br9".into() },
                },
                "bridge `br9` is not managed by bpfnet (see `bpfnet ls`)",
            ),
            (
                ApiError::NotFound {
                    missing: Missing::Veth { name: "vc9".into() },
                },
                "`vc9` is not a container veth on a managed bridge (see `bpfnet ls`)",
            ),
            (
                ApiError::NotFound {
                    missing: Missing::Publish { spec },
                },
                "`8080:172.17.0.4:80/tcp` is not published (see `bpfnet ls`)",
            ),
            (
                ApiError::NotFound {
                    missing: Missing::Endpoint { addr },
                },
                "172.17.0.4 is not a registered endpoint (see `bpfnet ls`)",
            ),
        ] {
            assert_eq!(message(e), m);
        }
    }

    #[test]
    fn a_datapath_failure_lists_every_map_error() {
        let e = ApiError::Datapath {
            change: Change::Unpublish {
                spec: "8080:172.17.0.4:80".parse().unwrap(),
            },
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
            m.starts_with("cannot unpublish `8080:172.17.0.4:80/tcp`: cannot remove a: "),
            "{m}"
        );
        assert!(m.contains("; cannot remove b: "), "{m}");
    }
}
