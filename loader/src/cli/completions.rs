//! `bpfnet completions SHELL`: the shell's completion script, from the command
//! definitions, on stdout.
use std::io::Write as _;

use anyhow::Context as _;
use clap_complete::Shell;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Shell to complete for (bash, zsh, fish, elvish, powershell). Packages install
    /// bash's in /usr/share/bash-completion/completions/bpfnet, zsh's as
    /// /usr/share/zsh/vendor-completions/_bpfnet and fish's in
    /// /`usr/share/fish/vendor_completions.d/bpfnet.fish`.
    #[arg(value_name = "SHELL")]
    shell: Shell,
}

/// `cmd` is the whole `bpfnet` command, as clap builds it.
pub(crate) fn run(args: Args, cmd: clap::Command) -> anyhow::Result<()> {
    // Rendered in memory: clap_complete panics on a failed write, stdout may be closed.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut visible(&cmd), "bpfnet", &mut script);
    std::io::stdout()
        .write_all(&script)
        .context("cannot write the completion script to stdout")
}

/// `cmd` without its hidden subcommands (`man`), which `clap_complete` would offer
/// (clap-rs/clap#1335): `Command` has no way to remove one, so the root is put together
/// again from the same arguments and the visible subcommands.
fn visible(cmd: &clap::Command) -> clap::Command {
    clap::Command::new("bpfnet")
        .version(env!("CARGO_PKG_VERSION"))
        .args(cmd.get_arguments().cloned())
        .subcommands(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
}
