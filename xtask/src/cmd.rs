//! Running commands with their output shown, failing with the command line.
use std::{
    ffi::OsStr,
    os::unix::process::CommandExt as _,
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::root;

pub(crate) fn command(program: impl AsRef<OsStr>, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args).current_dir(root());
    c
}

/// Run to completion, inheriting stdio; a non-zero exit is an error.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<()> {
    status(
        command(program, args),
        &format!("{program} {}", args.join(" ")),
    )
}

pub(crate) fn status(mut c: Command, what: &str) -> Result<()> {
    eprintln!("xtask: {what}");
    let st = c
        .status()
        .with_context(|| format!("cannot start `{what}`"))?;
    if !st.success() {
        bail!("`{what}` failed ({st})");
    }
    Ok(())
}

/// Whether a command runs and exits 0, output discarded.
pub(crate) fn succeeds(program: &str, args: &[&str]) -> bool {
    command(program, args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Captured stdout of a command that must succeed.
pub(crate) fn output(program: &str, args: &[&str]) -> Result<String> {
    let out = command(program, args)
        .output()
        .with_context(|| format!("cannot start `{program}`"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Replace this process with `bin ARGS` (so signals go straight to it).
pub(crate) fn exec(bin: &Path, args: &[String]) -> Result<()> {
    let err = Command::new(bin).args(args).exec();
    Err(err).with_context(|| format!("cannot run {}", bin.display()))
}

pub(crate) fn is_root() -> bool {
    output("id", &["-u"]).is_ok_and(|u| u.trim() == "0")
}
