// The toolchain the eBPF datapath is built with, pinned: the verifier's work on a program
// depends on the code the compiler and the linker emit, so a new release of either can
// move a program's figure. `cargo xtask setup` installs exactly these and replaces what
// differs; `cargo xtask setup --check` compares. Also included by `loader/build.rs`.

/// The nightly that builds the eBPF crate (`-Z build-std=core`): rustc 1.97.0-nightly
/// (e50aa6fba 2026-05-19), LLVM 22.1.4.
pub(crate) const NIGHTLY: &str = "nightly-2026-05-20";
/// bpf-linker, exactly.
pub(crate) const BPF_LINKER: &str = "0.13.0";
/// The LLVM bpf-linker links against (dynamically: `llvm-<major>-dev` stays installed).
pub(crate) const LLVM_MAJOR: u32 = 22;
/// cargo-deb, which builds the Debian package.
pub(crate) const CARGO_DEB: &str = "3.8.0";
