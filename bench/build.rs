//! Builds the floor's eBPF crate (`floor-ebpf`) so the bench can embed its object, with
//! the pinned toolchain, as `loader/build.rs` builds the datapath.
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
    let floor = metadata
        .packages
        .iter()
        .find(|p| p.name.as_str() == "floor-ebpf")
        .ok_or_else(|| anyhow!("package floor-ebpf not found in the workspace"))?;
    let root_dir = floor
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("floor-ebpf manifest has no parent directory"))?;
    aya_build::build_ebpf(
        [Package {
            name: floor.name.as_str(),
            root_dir: root_dir.as_str(),
            no_default_features: false,
            features: &[],
        }],
        Toolchain::Custom(pins::NIGHTLY),
    )
}
