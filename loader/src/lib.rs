//! bpfnet: an eBPF fast-path datapath for containers. This crate is the `bpfnet` binary's
//! library: the daemon, its control API, the datapath loader and the spec parser.
/// Serialize `$t` as its `Display` string and deserialize it through its `FromStr`, so
/// the wire and the state file carry the form the CLI reads and prints.
macro_rules! serde_as_string {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                <String as serde::Deserialize>::deserialize(d)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}

pub mod api;
pub mod cluster;
pub mod conntrack;
pub mod daemon;
pub mod datapath;
pub mod docker;
pub mod endpoint;
pub mod flags;
pub mod metrics;
pub mod monitor;
pub mod netlink;
pub mod spec;
pub mod state;
