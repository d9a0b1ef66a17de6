//! Link options for the floor's object: the datapath's own (`datapath-ebpf/build.rs`),
//! so both are compiled alike and the ratio compares code, not linker modes.
fn main() {
    println!("cargo::rustc-link-arg-bins=--disable-expand-memcpy-in-order");
}
