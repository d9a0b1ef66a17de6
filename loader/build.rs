//! Builds the eBPF datapath crate so the object can be embedded in the `bpfnet` binary.
use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

/// The pinned toolchain, shared with `cargo xtask setup`.
#[expect(dead_code, reason = "build.rs uses only the nightly's pin")]
mod pins {
    include!("../xtask/src/pins.rs");
}

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-changed=../xtask/src/pins.rs");
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .iter()
        .find(|p| p.name.as_str() == "datapath-ebpf")
        .ok_or_else(|| anyhow!("package datapath-ebpf not found in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("datapath-ebpf manifest has no parent directory"))?;
    aya_build::build_ebpf(
        [Package {
            name: ebpf.name.as_str(),
            root_dir: root_dir.as_str(),
            no_default_features: false,
            features: &[],
        }],
        Toolchain::Custom(pins::NIGHTLY),
    )
}
