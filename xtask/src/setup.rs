//! Prerequisites, each checked before it is installed, so running this twice is cheap.
use anyhow::{Context as _, Result, bail};

use crate::cmd::{self, is_root, output, succeeds};

/// Debian packages: LLVM for bpf-linker (linked dynamically, so it stays installed) and
/// the tools the tests and the bench drive.
const PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "iproute2",
    "iptables",
    "ethtool",
    "util-linux",
    "iperf3",
    "iputils-ping",
    "docker.io",
    "busybox-static",
    // Attack tests: floods.
    "hping3",
    // Cluster: etcd for the control plane's tests; protoc for etcd-client's build (and
    // the well-known .proto files it imports, which protoc's package only recommends).
    "etcd-server",
    "protobuf-compiler",
    "libprotobuf-dev",
    // Packaging: dpkg-shlibdeps for cargo-deb; systemd-analyze and man for the package's
    // tests (the unit is verified, the man pages are read).
    "dpkg-dev",
    "systemd",
    "man-db",
];
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

pub fn run() -> Result<()> {
    packages()?;
    nightly()?;
    bpf_linker()?;
    cargo_deb()?;
    bpffs()?;
    eprintln!("xtask: setup complete");
    Ok(())
}

/// Run setup only if something is missing (what build/run/test call).
pub fn ensure() -> Result<()> {
    if missing_packages().is_empty() && nightly_ready() && bpf_linker_works() && cargo_deb_works() {
        return Ok(());
    }
    run()
}

fn missing_packages() -> Vec<&'static str> {
    PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !output("dpkg-query", &["-W", "-f=${Status}", p])
                .is_ok_and(|s| s.contains("install ok installed"))
        })
        .collect()
}

fn packages() -> Result<()> {
    let missing = missing_packages();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!("missing packages {missing:?}; run `cargo xtask setup` as root");
    }
    let mut update = cmd::command("apt-get", &["update", "-q"]);
    update.env("DEBIAN_FRONTEND", "noninteractive");
    cmd::status(update, "apt-get update")?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(&missing);
    let mut install = cmd::command("apt-get", &args);
    install.env("DEBIAN_FRONTEND", "noninteractive");
    cmd::status(install, &format!("apt-get install {}", missing.join(" ")))
}

fn nightly_ready() -> bool {
    output(
        "rustup",
        &["component", "list", "--toolchain", "nightly", "--installed"],
    )
    .is_ok_and(|c| c.contains("rust-src") && c.contains("rustfmt"))
}

fn nightly() -> Result<()> {
    if nightly_ready() {
        return Ok(());
    }
    if !succeeds("rustup", &["run", "nightly", "rustc", "--version"]) {
        cmd::run(
            "rustup",
            &["toolchain", "install", "nightly", "--profile", "minimal"],
        )?;
    }
    cmd::run(
        "rustup",
        &[
            "component",
            "add",
            "rust-src",
            "rustfmt",
            "--toolchain",
            "nightly",
        ],
    )
}

fn bpf_linker_works() -> bool {
    succeeds("bpf-linker", &["--version"])
}

fn bpf_linker() -> Result<()> {
    if bpf_linker_works() {
        return Ok(());
    }
    // The default feature wants LLVM 23, which Debian does not package here.
    let path = format!(
        "{LLVM_PREFIX}/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = cmd::command(
        "cargo",
        &[
            "install",
            "bpf-linker",
            "--locked",
            "--no-default-features",
            "--features",
            "llvm-22",
        ],
    );
    c.env("PATH", path).env("LLVM_SYS_221_PREFIX", LLVM_PREFIX);
    cmd::status(c, "cargo install bpf-linker (LLVM 22)")
        .context("bpf-linker is needed to link the eBPF datapath")
}

fn cargo_deb_works() -> bool {
    succeeds("cargo", &["deb", "--version"])
}

/// `cargo xtask dist` packages with cargo-deb (about a minute and a half to install).
fn cargo_deb() -> Result<()> {
    if cargo_deb_works() {
        return Ok(());
    }
    cmd::run("cargo", &["install", "cargo-deb", "--locked"])
        .context("cargo-deb is needed to build the Debian package")
}

fn bpffs() -> Result<()> {
    if succeeds("mountpoint", &["-q", "/sys/fs/bpf"]) || !is_root() {
        return Ok(());
    }
    cmd::run("mount", &["-t", "bpf", "bpf", "/sys/fs/bpf"])
}
