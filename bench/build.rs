//! Builds the floor's eBPF crate (`floor-ebpf`) so the bench can embed its object, with
//! the pinned toolchain, as `loader/build.rs` builds the datapath.

/// The pinned toolchain, shared with `cargo xtask setup`.
#[expect(dead_code, reason = "build.rs uses only the nightly's pin")]
mod pins {
    include!("../xtask/src/pins.rs");
}

include!("../xtask/src/ebpf_build.rs");

fn main() -> anyhow::Result<()> {
    build_ebpf("floor-ebpf")
}
