//! Remove what killed test runs left behind (`cargo xtask test` runs this first).
fn main() {
    let swept = bpfnet_tests::leftovers::sweep();
    for ns in &swept.namespaces {
        println!("removed namespace {ns}");
    }
    for dir in &swept.dirs {
        println!("removed {}", dir.display());
    }
    if swept.processes > 0 {
        println!("killed {} leftover processes", swept.processes);
    }
}
