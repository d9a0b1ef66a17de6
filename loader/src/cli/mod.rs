//! One module per subcommand; each holds its arguments and its handler.
pub mod cluster;
pub mod completions;
pub mod conntrack;
pub mod daemon;
pub mod endpoint;
pub mod etcd_access;
pub mod ls;
pub mod man;
pub mod monitor;
pub mod node;
pub mod publish;
pub mod stats;
pub mod status;
