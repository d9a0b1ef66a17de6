//! Builds the eBPF datapath crate so the object can be embedded in the `bpfnet` binary.

/// The pinned toolchain, shared with `cargo xtask setup`.
#[expect(dead_code, reason = "build.rs uses only the nightly's pin")]
mod pins {
    include!("../xtask/src/pins.rs");
}

include!("../xtask/src/ebpf_build.rs");

fn main() -> anyhow::Result<()> {
    build_ebpf("datapath-ebpf")
}
