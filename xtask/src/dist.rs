//! `cargo xtask dist`: the Debian package `target/debian/bpfnet_<version>-1_<arch>.deb`,
//! made by cargo-deb from the release build, the systemd unit in `packaging/`, and the
//! completions and man pages the built binary writes into `target/dist/` (generated,
//! never committed). Its contents are listed in `[package.metadata.deb]` of loader/.
use std::{fs, path::PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::{cmd, root};

/// Completion scripts: (shell, file name under target/dist/completions).
const COMPLETIONS: &[(&str, &str)] = &[
    ("bash", "bpfnet"),
    ("zsh", "_bpfnet"),
    ("fish", "bpfnet.fish"),
];

/// Build the release binary and package it; returns the .deb's path.
pub(crate) fn run() -> Result<PathBuf> {
    crate::build()?;
    package()
}

/// Package the release binary as it was built.
fn package() -> Result<PathBuf> {
    let bin = root().join("target/release/bpfnet");
    let dist = root().join("target/dist");
    // Stale pages of a removed subcommand must not end up in the package.
    if dist.exists() {
        fs::remove_dir_all(&dist).with_context(|| format!("cannot remove {}", dist.display()))?;
    }
    let completions = dist.join("completions");
    fs::create_dir_all(&completions)
        .with_context(|| format!("cannot create {}", completions.display()))?;
    for (shell, file) in COMPLETIONS {
        let script = cmd::output(&bin.display().to_string(), &["completions", shell])?;
        fs::write(completions.join(file), script)
            .with_context(|| format!("cannot write the {shell} completions"))?;
    }
    let man = dist.join("man").display().to_string();
    cmd::run(&bin.display().to_string(), &["man", &man])?;
    eprintln!("xtask: cargo deb --package bpfnet --no-build");
    // cargo-deb prints the package's path on stdout.
    let out = cmd::output("cargo", &["deb", "--package", "bpfnet", "--no-build"])?;
    let deb = out.lines().last().map(str::trim).unwrap_or_default();
    let deb = root().join(deb);
    if deb.extension().is_none_or(|e| e != "deb") || !deb.is_file() {
        bail!("cargo deb did not report a .deb it wrote (stdout: {out:?})");
    }
    eprintln!("xtask: wrote {}", deb.display());
    Ok(deb)
}
