//! `bpfnet endpoint add|del`: containers not started by Docker (pipework style).
use std::{net::Ipv4Addr, path::Path};

use bpfnet::{
    api::{Request, client},
    endpoint::{Ipv4Cidr, Mac},
};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Register a container's address on its host-side veth: traffic between endpoints of
    /// one network takes the fast path, and the veth may send only from this address.
    Add {
        /// The managed bridge the veth is a port of.
        #[arg(long)]
        bridge: String,
        /// The container's host-side veth.
        #[arg(long)]
        veth: String,
        /// The container's address and prefix length, e.g. 172.17.0.4/16.
        #[arg(long)]
        ip: Ipv4Cidr,
        /// The container's MAC (default: the one the bridge has learned on the veth).
        #[arg(long)]
        mac: Option<Mac>,
    },
    /// Forget an endpoint.
    Del {
        /// The endpoint's address.
        #[arg(long)]
        ip: Ipv4Addr,
    },
}

pub fn run(args: Args, socket: &Path) -> anyhow::Result<()> {
    let req = match args.action {
        Action::Add {
            bridge,
            veth,
            ip,
            mac,
        } => Request::EndpointAdd {
            bridge,
            veth,
            ip,
            mac,
        },
        Action::Del { ip } => Request::EndpointDel { ip },
    };
    client::call(socket, &req)?;
    Ok(())
}
