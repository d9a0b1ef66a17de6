//! `bpfnet publish SPEC` and `bpfnet unpublish SPEC`.
use std::path::Path;

use bpfnet::{
    api::{Request, client},
    spec::PublishSpec,
};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// [HOSTIP:]HOSTPORT[-END]:CONTAINERIP:CONTAINERPORT[-END][/tcp|/udp]; IPv6 addresses
    /// in brackets, as Docker writes them: 8038:172.17.0.4:80, [::]:8038:[`fd00:beef::4`]:80
    spec: PublishSpec,
}

pub(crate) fn publish(args: Args, socket: &Path) -> anyhow::Result<()> {
    client::call(socket, &Request::Publish { spec: args.spec })?;
    Ok(())
}

pub(crate) fn unpublish(args: Args, socket: &Path) -> anyhow::Result<()> {
    client::call(socket, &Request::Unpublish { spec: args.spec })?;
    Ok(())
}
