//! Prerequisites, each checked before it is installed, so running this twice is cheap.
use anyhow::{Context as _, Result, bail};

use crate::{
    cmd::{self, is_root, output, succeeds},
    pins,
};

/// Debian packages the tests and the bench drive (and `llvm-<pins::LLVM_MAJOR>-dev` for
/// bpf-linker, linked dynamically, so it stays installed).
const PACKAGES: &[&str] = &[
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
    // The TLS cluster tests make their CA and certificates with it.
    "openssl",
    "protobuf-compiler",
    "libprotobuf-dev",
    // Packaging: dpkg-shlibdeps for cargo-deb; systemd-analyze and man for the package's
    // tests (the unit is verified, the man pages are read).
    "dpkg-dev",
    "systemd",
    "man-db",
    // The package's tests check the zsh and fish completion scripts in their shells.
    "zsh",
    "fish",
];

pub(crate) fn run() -> Result<()> {
    packages()?;
    nightly()?;
    bpf_linker()?;
    cargo_deb()?;
    bpffs()?;
    let off: Vec<_> = pins().into_iter().filter(|p| !p.holds()).collect();
    if !off.is_empty() {
        print(&off);
        bail!("setup could not install the pinned toolchain");
    }
    eprintln!("xtask: setup complete");
    Ok(())
}

/// Run setup only if something is missing or differs from its pin (what build, run and
/// test call).
pub(crate) fn ensure() -> Result<()> {
    if missing_packages().is_empty() && pins().iter().all(Pin::holds) {
        return Ok(());
    }
    run()
}

/// `cargo xtask setup --check`: every pinned tool as found against its pin; an error
/// when one differs or is missing.
pub(crate) fn check() -> Result<()> {
    let pins = pins();
    print(&pins);
    let missing = missing_packages();
    if !missing.is_empty() {
        eprintln!("missing packages: {}", missing.join(" "));
    }
    if pins.iter().all(Pin::holds) && missing.is_empty() {
        return Ok(());
    }
    bail!("the toolchain differs from its pins: run `cargo xtask setup`")
}

/// One pinned tool: what it must be, what is installed.
struct Pin {
    name: &'static str,
    pinned: String,
    found: Option<String>,
}

impl Pin {
    fn holds(&self) -> bool {
        self.found.as_deref() == Some(self.pinned.as_str())
    }
}

fn print(pins: &[Pin]) {
    eprintln!("{:<12} {:<40} found", "tool", "pinned");
    for p in pins {
        let found = p.found.as_deref().unwrap_or("(none)");
        let mark = if p.holds() { "" } else { "  <- differs" };
        eprintln!("{:<12} {:<40} {found}{mark}", p.name, p.pinned);
    }
}

fn pins() -> Vec<Pin> {
    vec![
        Pin {
            name: "nightly",
            pinned: format!("{} + rust-src, rustfmt", pins::NIGHTLY),
            found: nightly_found(),
        },
        Pin {
            name: "llvm",
            pinned: pins::LLVM_MAJOR.to_string(),
            found: llvm_major(),
        },
        Pin {
            name: "bpf-linker",
            pinned: format!("{} (LLVM {})", pins::BPF_LINKER, pins::LLVM_MAJOR),
            found: bpf_linker_found(),
        },
        Pin {
            name: "cargo-deb",
            pinned: pins::CARGO_DEB.to_string(),
            found: output("cargo", &["deb", "--version"])
                .ok()
                .and_then(|v| last_word(&v)),
        },
    ]
}

fn last_word(s: &str) -> Option<String> {
    s.split_whitespace().last().map(str::to_string)
}

fn llvm_prefix() -> String {
    format!("/usr/lib/llvm-{}", pins::LLVM_MAJOR)
}

/// The pinned nightly, with the components the build needs, as the pin spells it.
fn nightly_found() -> Option<String> {
    let toolchain = pins::NIGHTLY;
    let version = output("rustup", &["run", toolchain, "rustc", "--version"]).ok()?;
    let components = output(
        "rustup",
        &["component", "list", "--toolchain", toolchain, "--installed"],
    )
    .ok()?;
    let has = |c: &str| components.lines().any(|l| l.starts_with(c));
    Some(if has("rust-src") && has("rustfmt") {
        format!("{toolchain} + rust-src, rustfmt")
    } else {
        format!(
            "{toolchain} without rust-src or rustfmt ({})",
            version.trim()
        )
    })
}

/// The major version of the LLVM the pin names, as its llvm-config reports it.
fn llvm_major() -> Option<String> {
    let config = format!("{}/bin/llvm-config", llvm_prefix());
    let v = output(&config, &["--version"]).ok()?;
    v.trim().split('.').next().map(str::to_string)
}

/// bpf-linker's version and the LLVM major its binary links.
fn bpf_linker_found() -> Option<String> {
    let version = last_word(&output("bpf-linker", &["--version"]).ok()?)?;
    let path = output("sh", &["-c", "command -v bpf-linker"]).ok()?;
    let libs = output("ldd", &[path.trim()]).unwrap_or_default();
    let llvm = libs
        .split_whitespace()
        .find_map(|w| w.strip_prefix("libLLVM.so."))
        .and_then(|v| v.split('.').next())
        .or_else(|| libs.contains("libLLVM-").then_some("?"))
        .unwrap_or("static");
    Some(format!("{version} (LLVM {llvm})"))
}

fn missing_packages() -> Vec<String> {
    let llvm = format!("llvm-{}-dev", pins::LLVM_MAJOR);
    std::iter::once(llvm.as_str())
        .chain(PACKAGES.iter().copied())
        .filter(|p| {
            !output("dpkg-query", &["-W", "-f=${Status}", p])
                .is_ok_and(|s| s.contains("install ok installed"))
        })
        .map(str::to_string)
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
    args.extend(missing.iter().map(String::as_str));
    let mut install = cmd::command("apt-get", &args);
    install.env("DEBIAN_FRONTEND", "noninteractive");
    cmd::status(install, &format!("apt-get install {}", missing.join(" ")))
}

fn nightly() -> Result<()> {
    if nightly_found().is_some_and(|f| f.ends_with("+ rust-src, rustfmt")) {
        return Ok(());
    }
    cmd::run(
        "rustup",
        &[
            "toolchain",
            "install",
            pins::NIGHTLY,
            "--profile",
            "minimal",
            "--component",
            "rust-src",
            "--component",
            "rustfmt",
        ],
    )
    .context("the pinned nightly builds the eBPF datapath")
}

fn bpf_linker() -> Result<()> {
    let pinned = format!("{} (LLVM {})", pins::BPF_LINKER, pins::LLVM_MAJOR);
    if bpf_linker_found().as_deref() == Some(pinned.as_str()) {
        return Ok(());
    }
    // The default feature wants the newest LLVM; the pinned one is chosen by feature.
    let prefix = llvm_prefix();
    let path = format!("{prefix}/bin:{}", std::env::var("PATH").unwrap_or_default());
    let feature = format!("llvm-{}", pins::LLVM_MAJOR);
    let mut c = cmd::command(
        "cargo",
        &[
            "install",
            "bpf-linker",
            "--version",
            &format!("={}", pins::BPF_LINKER),
            "--locked",
            "--force",
            "--no-default-features",
            "--features",
            &feature,
        ],
    );
    c.env("PATH", path)
        .env(format!("LLVM_SYS_{}1_PREFIX", pins::LLVM_MAJOR), &prefix);
    cmd::status(c, &format!("cargo install bpf-linker@{pinned}"))
        .context("bpf-linker is needed to link the eBPF datapath")
}

/// `cargo xtask dist` packages with cargo-deb (about a minute and a half to install).
fn cargo_deb() -> Result<()> {
    let found = output("cargo", &["deb", "--version"]).ok();
    if found.and_then(|v| last_word(&v)).as_deref() == Some(pins::CARGO_DEB) {
        return Ok(());
    }
    cmd::run(
        "cargo",
        &[
            "install",
            "cargo-deb",
            "--version",
            &format!("={}", pins::CARGO_DEB),
            "--locked",
            "--force",
        ],
    )
    .context("cargo-deb is needed to build the Debian package")
}

fn bpffs() -> Result<()> {
    if succeeds("mountpoint", &["-q", "/sys/fs/bpf"]) || !is_root() {
        return Ok(());
    }
    cmd::run("mount", &["-t", "bpf", "bpf", "/sys/fs/bpf"])
}
