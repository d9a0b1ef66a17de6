//! `bpfnet endpoint add|del`: containers not started by Docker (pipework style).
use std::{net::IpAddr, path::Path};

use anyhow::bail;
use bpfnet::{
    api::{Request, client},
    endpoint::{IpCidr, Mac},
};

#[derive(clap::Args)]
pub(crate) struct Args {
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
        /// The container's addresses and prefix lengths: at most one IPv4 and any IPv6
        /// ones, e.g. `--ip 172.18.0.4/16 --ip fd00:beef::4/64` (repeat the flag); an
        /// IPv6-only container gives only IPv6 ones.
        #[arg(long = "ip", required = true)]
        ips: Vec<IpCidr>,
        /// The container's MAC (default: the one the bridge has learned on the veth).
        #[arg(long)]
        mac: Option<Mac>,
    },
    /// Forget an endpoint.
    Del {
        /// One of the endpoint's addresses.
        #[arg(long)]
        ip: IpAddr,
    },
}

pub(crate) fn run(args: Args, socket: &Path) -> anyhow::Result<()> {
    let req = match args.action {
        Action::Add {
            bridge,
            veth,
            ips,
            mac,
        } => {
            let mut v4 = ips.iter().filter_map(|c| match c {
                IpCidr::V4(c) => Some(*c),
                IpCidr::V6(_) => None,
            });
            let ip = v4.next();
            if v4.next().is_some() {
                bail!(
                    "an endpoint has at most one IPv4 address (and any number of IPv6 ones); \
                     pass one --ip a.b.c.d/len"
                );
            }
            let ip6 = ips
                .iter()
                .filter_map(|c| match c {
                    IpCidr::V6(c) => Some(*c),
                    IpCidr::V4(_) => None,
                })
                .collect();
            Request::EndpointAdd {
                bridge,
                veth,
                ip,
                ip6,
                mac,
            }
        }
        Action::Del { ip } => Request::EndpointDel { ip },
    };
    client::call(socket, &req)?;
    Ok(())
}
