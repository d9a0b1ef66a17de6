//! `bpfnet publish SPEC` and `bpfnet unpublish SPEC`.
use std::path::Path;

use bpfnet::{
    api::{Request, client},
    spec::PublishSpec,
};

#[derive(clap::Args)]
pub struct Args {
    /// [HOSTIP:]HOSTPORT[-END]:CONTAINERIP:CONTAINERPORT[-END][/tcp|/udp]
    spec: PublishSpec,
}

pub fn publish(args: Args, socket: &Path) -> anyhow::Result<()> {
    client::call(socket, &Request::Publish { spec: args.spec })?;
    Ok(())
}

pub fn unpublish(args: Args, socket: &Path) -> anyhow::Result<()> {
    client::call(socket, &Request::Unpublish { spec: args.spec })?;
    Ok(())
}
