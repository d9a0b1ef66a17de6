//! One module per subcommand; each holds its arguments and its handler.
pub(crate) mod cluster;
pub(crate) mod completions;
pub(crate) mod conntrack;
pub(crate) mod daemon;
pub(crate) mod endpoint;
pub(crate) mod etcd_access;
pub(crate) mod ls;
pub(crate) mod man;
pub(crate) mod monitor;
pub(crate) mod node;
pub(crate) mod publish;
pub(crate) mod stats;
pub(crate) mod status;
