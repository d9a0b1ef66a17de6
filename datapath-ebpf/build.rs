//! Link options for the eBPF object.
fn main() {
    // bpf-linker asks LLVM to expand memcpy "in order" for a JIT pattern matcher the
    // kernel does not have; that mode also stops LLVM from expanding memset, so every
    // zeroed field became a call to a byte-loop subprogram (3 bytes of a CtKey's padding
    // cost a call and a return per packet). Without it memset and memcpy are plain stores.
    println!("cargo::rustc-link-arg-bins=--disable-expand-memcpy-in-order");
}
