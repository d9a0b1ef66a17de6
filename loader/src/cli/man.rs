//! `bpfnet man DIR` (hidden): the man pages, from the command definitions, for packages:
//! `bpfnet.1` and one page per subcommand (`bpfnet-publish.1`, `bpfnet-cluster-init.1`).
use std::{fs, path::PathBuf};

use anyhow::Context as _;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Directory the pages are written into (created when missing).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

/// `cmd` is the whole `bpfnet` command, as clap builds it.
pub(crate) fn run(args: Args, cmd: clap::Command) -> anyhow::Result<()> {
    fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    // Recurses into nested subcommands and leaves out hidden ones (this one).
    clap_mangen::generate_to(cmd, &args.dir)
        .with_context(|| format!("cannot write the man pages into {}", args.dir.display()))
}
