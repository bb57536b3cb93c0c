//! Build script. The CPU build needs nothing; the `cuda` feature (a later milestone) compiles the
//! kernels in `csrc/` with nvcc here.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        println!("cargo:rerun-if-changed=csrc");
    }
}
