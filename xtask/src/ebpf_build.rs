// Included by `loader/build.rs` (the datapath) and `bench/build.rs` (the floor): build
// one eBPF crate of the workspace with the pinned nightly, so its object can be
// embedded. Needs the includer to have a `pins` module (`xtask/src/pins.rs`).

/// Build the workspace's eBPF crate `name` for `bpfel` with the pinned toolchain.
fn build_ebpf(name: &str) -> anyhow::Result<()> {
    use anyhow::{Context as _, anyhow};
    use aya_build::{Package, Toolchain};

    println!("cargo:rerun-if-changed=../xtask/src/pins.rs");
    println!("cargo:rerun-if-changed=../xtask/src/ebpf_build.rs");
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let package = metadata
        .packages
        .iter()
        .find(|p| p.name.as_str() == name)
        .ok_or_else(|| anyhow!("package {name} not found in the workspace"))?;
    let root_dir = package
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("{name} manifest has no parent directory"))?;
    aya_build::build_ebpf(
        [Package {
            name,
            root_dir: root_dir.as_str(),
            no_default_features: false,
            features: &[],
        }],
        Toolchain::Custom(pins::NIGHTLY),
    )
}
