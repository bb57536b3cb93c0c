//! Build script.
//!
//! Always: the rules shared by every backend (`csrc/rules.h`) and the portable HEALPix geometry
//! (`csrc/healpix.h`) are compiled for the host from `csrc/host.cpp` and `csrc/geometry_host.cpp`
//! by the system's C++ compiler (through the `cc` crate; no C++ runtime is linked).
//! With the `cuda` feature, the kernels in `csrc/` are compiled by nvcc into a static library, the
//! CUDA runtime is linked statically, and bindgen turns `include/hpsf_kernels.h` into the Rust
//! declarations of the launchers.
//!
//! With the `cli` feature: the Natural Earth coastlines for the PNG maps are copied to
//! `OUT_DIR/coast.shp` (see [`coastlines`]).
//!
//! Environment:
//! * `CUDA_HOME` (or `CUDA_PATH`): the CUDA toolkit holding `bin/nvcc`, `include/` and
//!   `lib/libcudart_static.a` (`lib64/` also searched). Default: the `nvcc` on `PATH`'s parent.
//!   `bash scripts/setup-cuda.sh` installs one from PyPI and prints the value to use.
//! * `HPSF_CUDA_GENCODE`: nvcc code-generation flags, default
//!   `-gencode=arch=compute_80,code=sm_80 -gencode=arch=compute_90,code=sm_90
//!   -gencode=arch=compute_90,code=compute_90` (A100, H100/H200, and PTX for newer GPUs).

use std::path::{Path, PathBuf};

/// The kernel sources, one per kernel family.
const KERNELS: &[&str] =
    &["csrc/weights.cu", "csrc/spmm.cu", "csrc/cg.cu", "csrc/vec.cu", "csrc/layout.cu", "csrc/construct.cu"];
const HEADERS: &[&str] = &[
    "csrc/common.cuh",
    "csrc/rules.h",
    "csrc/pmath.h",
    "csrc/healpix.h",
    "csrc/construct.h",
    "include/hpsf_kernels.h",
];
/// The CUDA emulator (csrc/emu/README.md), used instead of nvcc with `HPSF_CUDA_EMULATE=1`.
const EMULATOR: &[&str] = &[
    "csrc/emu/cuda_runtime.h",
    "csrc/emu/cub/cub.cuh",
    "csrc/emu/emu_shared.h",
    "csrc/emu/emu.cpp",
    "csrc/emu/libcuda.cpp",
];
const DEFAULT_GENCODE: &str = "-gencode=arch=compute_80,code=sm_80 -gencode=arch=compute_90,code=sm_90 \
                               -gencode=arch=compute_90,code=compute_90";

/// The host build of the shared rules.
const HOST: &str = "csrc/host.cpp";
const RULES: &str = "csrc/rules.h";
/// The host build of the portable HEALPix geometry and construction steps.
const GEOMETRY: &str = "csrc/geometry_host.cpp";
const HEALPIX: &str = "csrc/healpix.h";
const CONSTRUCT: &str = "csrc/construct.h";
const PMATH: &str = "csrc/pmath.h";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for f in [HOST, RULES, GEOMETRY, HEALPIX, CONSTRUCT, PMATH] {
        println!("cargo:rerun-if-changed={f}");
    }
    // the same arithmetic as Rust's: no contraction of a·b + c into FMA
    cc::Build::new()
        .cpp(true)
        .cpp_link_stdlib(None)
        .file(HOST)
        .file(GEOMETRY)
        .flag_if_supported("-std=c++14")
        .flag_if_supported("-fno-exceptions")
        .flag_if_supported("-fno-rtti")
        .flag_if_supported("-ffp-contract=off")
        .compile("hpsf_host");
    if std::env::var_os("CARGO_FEATURE_CLI").is_some() {
        coastlines();
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    for f in KERNELS.iter().chain(HEADERS) {
        println!("cargo:rerun-if-changed={f}");
    }
    for v in ["CUDA_HOME", "CUDA_PATH", "HPSF_CUDA_GENCODE", "PATH", "HPSF_CUDA_EMULATE"] {
        println!("cargo:rerun-if-env-changed={v}");
    }
    if std::env::var("HPSF_CUDA_EMULATE").is_ok_and(|v| !v.is_empty() && v != "0") {
        emulated_kernels();
    } else {
        nvcc_kernels();
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let bindings = std::panic::catch_unwind(|| {
        bindgen::Builder::default()
            .header("include/hpsf_kernels.h")
            .allowlist_function("hpsf_.*")
            .allowlist_type("hpsf_stream")
            .allowlist_var("HPSF_.*")
            // the CG scalars' layout is written once, in src/backend/mod.rs
            .blocklist_type("hpsf_cg_scalars")
            .blocklist_type("hpsf_box_args")
            .raw_line("use crate::backend::{hpsf_box_args, hpsf_cg_scalars};")
            .layout_tests(false)
            .generate()
    });
    match bindings {
        Ok(Ok(b)) => b.write_to_file(out.join("hpsf_kernels.rs")).expect("writing the bindings"),
        Ok(Err(e)) => fail(&format!("bindgen could not read include/hpsf_kernels.h: {e}")),
        Err(_) => fail(
            "bindgen needs libclang: install it (Debian/Ubuntu: `apt-get install libclang-dev`) or point \
             LIBCLANG_PATH at the directory holding libclang.so",
        ),
    }
}

/// The kernels compiled by nvcc into `libhpsf_kernels.a`, with the CUDA runtime linked statically.
fn nvcc_kernels() {
    let cuda = cuda_home();
    let nvcc = cuda.join("bin").join("nvcc");

    // cc takes the CUDA compiler from NVCC (the host compiler stays CC/cc)
    std::env::set_var("NVCC", &nvcc);
    let mut build = cc::Build::new();
    // -fmad=false: as on the host, a·b + c is never contracted into an FMA (the CPU and the GPU
    // round every operation alike)
    build.cuda(true).cudart("none").include("include").include(cuda.join("include")).flag("-O3").flag("-fmad=false");
    let gencode = std::env::var("HPSF_CUDA_GENCODE").unwrap_or_else(|_| DEFAULT_GENCODE.to_string());
    for flag in gencode.split_whitespace() {
        build.flag(flag);
    }
    for k in KERNELS {
        build.file(k);
    }
    build.compile("hpsf_kernels");

    let lib = ["lib", "lib64", "lib/x64"].iter().map(|d| cuda.join(d)).find(|d| d.join("libcudart_static.a").exists());
    let Some(lib) = lib else {
        fail(&format!(
            "libcudart_static.a not found under {} (lib/ or lib64/): install the CUDA runtime \
             (e.g. `pip install nvidia-cuda-runtime==13.0.96`, see scripts/setup-cuda.sh)",
            cuda.display()
        ));
    };
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=static=cudart_static");
    for l in ["dl", "pthread", "rt"] {
        println!("cargo:rustc-link-lib={l}");
    }
}

/// The kernels compiled for the host's CUDA emulator (`HPSF_CUDA_EMULATE=1`, csrc/emu/README.md): each
/// `.cu` file with its launches `k<<<grid, block, shared, stream>>>(args)` rewritten as
/// `hpsf_emu::launch("k", k, grid, block, shared, stream)(args)` and compiled by the host's C++
/// compiler against csrc/emu's `cuda_runtime.h` and `cub/cub.cuh`, with the emulator's runtime, into
/// `libhpsf_kernels.a`; the emulator's driver is built as `<target>/<profile>/cuda-emu/libcuda.so`,
/// for `LD_LIBRARY_PATH` (cudarc loads the driver by that name).
fn emulated_kernels() {
    // (only here: a change to the emulator does not rebuild nvcc's kernels)
    for f in EMULATOR {
        println!("cargo:rerun-if-changed={f}");
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let dir = out.join("emu");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| fail(&format!("creating {}: {e}", dir.display())));
    let mut build = cc::Build::new();
    build.cpp(true).include("csrc/emu").include("csrc").include("include").flag("-std=c++17").flag("-O2");
    // the same arithmetic as the GPU's (-fmad=false) and the CPU's
    build.flag("-ffp-contract=off").file("csrc/emu/emu.cpp");
    for k in KERNELS {
        let text = std::fs::read_to_string(k).unwrap_or_else(|e| fail(&format!("reading {k}: {e}")));
        let name = Path::new(k).file_stem().and_then(|s| s.to_str()).unwrap_or("kernels");
        let dest = dir.join(format!("{name}.cpp"));
        let origin = std::fs::canonicalize(k).unwrap_or_else(|_| PathBuf::from(k));
        let source = format!("#line 1 \"{}\"\n{}", origin.display(), emulated_launches(&text, k));
        std::fs::write(&dest, source).unwrap_or_else(|e| fail(&format!("writing {}: {e}", dest.display())));
        build.file(&dest);
    }
    build.compile("hpsf_kernels");

    // <target>/<profile>: OUT_DIR is <target>/<profile>/build/<package>-<hash>/out
    let profile_dir = out.ancestors().nth(3).unwrap_or(&out).join("cuda-emu");
    std::fs::create_dir_all(&profile_dir).unwrap_or_else(|e| fail(&format!("creating {}: {e}", profile_dir.display())));
    let lib = profile_dir.join("libcuda.so");
    let mut cmd = cc::Build::new().cpp(true).get_compiler().to_command();
    cmd.args(["-shared", "-fPIC", "-O2", "-std=c++17", "-Wl,-soname,libcuda.so", "-o"])
        .arg(&lib)
        .arg("csrc/emu/libcuda.cpp")
        .arg("-lstdc++");
    match cmd.status() {
        Ok(s) if s.success() => {}
        other => fail(&format!("building the CUDA emulator's driver {} failed: {other:?}", lib.display())),
    }
    println!(
        "cargo:warning=HPSF_CUDA_EMULATE: the kernels run on the host's CUDA emulator, not on a GPU; run with \
         LD_LIBRARY_PATH={}",
        profile_dir.display()
    );
}

/// `source` with every launch `kernel<<<config>>>(` rewritten as `hpsf_emu::launch("kernel", kernel,
/// config)(`; the kernel is the identifier before `<<<`, with its template arguments if any.
fn emulated_launches(source: &str, file: &str) -> String {
    let mut out = String::with_capacity(source.len() + 1024);
    let mut rest = source;
    while let Some(open) = rest.find("<<<") {
        let close =
            rest[open..].find(">>>").map(|c| open + c).unwrap_or_else(|| fail(&format!("{file}: <<< without >>>")));
        let head = &rest[..open];
        let bytes = head.as_bytes();
        let mut start = head.len();
        // template arguments: back to the matching '<'
        if head.ends_with('>') {
            let mut depth = 0i32;
            while start > 0 {
                start -= 1;
                match bytes[start] {
                    b'>' => depth += 1,
                    b'<' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
            }
        }
        while start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            start -= 1;
        }
        let kernel = &head[start..];
        if kernel.is_empty() || kernel.starts_with('<') {
            fail(&format!("{file}: no kernel name before <<<"));
        }
        out.push_str(&head[..start]);
        out.push_str(&format!("hpsf_emu::launch(\"{kernel}\", {kernel}, {})", &rest[open + 3..close]));
        rest = &rest[close + 3..];
    }
    out.push_str(rest);
    out
}

/// The CUDA toolkit directory: CUDA_HOME, CUDA_PATH, or the parent of the `nvcc` on PATH.
fn cuda_home() -> PathBuf {
    let from_env = ["CUDA_HOME", "CUDA_PATH"].iter().filter_map(std::env::var_os).map(PathBuf::from).next();
    let from_path = || {
        std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p).find(|d| d.join("nvcc").is_file()).and_then(|d| d.parent().map(Path::to_path_buf))
        })
    };
    match from_env.or_else(from_path) {
        Some(dir) if dir.join("bin").join("nvcc").is_file() => dir,
        Some(dir) => fail(&format!("no bin/nvcc under {} (CUDA_HOME/CUDA_PATH)", dir.display())),
        None => fail(
            "the `cuda` feature needs the CUDA compiler nvcc: run `bash scripts/setup-cuda.sh` (it installs nvcc \
             13.0 from PyPI into .venv-cuda) and set CUDA_HOME to the directory it prints, or install the CUDA \
             toolkit and put its bin/ on PATH",
        ),
    }
}

/// Where `scripts/natural-earth.sh` leaves the Natural Earth 1:110m countries (git-ignored).
const NATURAL_EARTH: &str = ".cache/natural-earth/naturalearth_lowres.shp";

/// Puts the shapefile the command's maps take their coastlines from at `OUT_DIR/coast.shp`, where
/// `include_bytes!` embeds it: the file named by `HEALPIX_PSF_NATURAL_EARTH`, else the one
/// `scripts/natural-earth.sh` downloads. Without either the file is empty and the maps have no
/// coastlines (a warning says so): the data are not committed, so a build must not depend on them.
fn coastlines() {
    println!("cargo:rerun-if-env-changed=HEALPIX_PSF_NATURAL_EARTH");
    let given = std::env::var_os("HEALPIX_PSF_NATURAL_EARTH").map(PathBuf::from);
    let src = given.clone().unwrap_or(PathBuf::from(NATURAL_EARTH));
    // a missing watched path reruns this script (and rebuilds the crate) on every build: for the
    // default one, watch its nearest existing folder inside .cache so that a later download is seen
    let watch = match given {
        Some(path) => Some(path),
        None => src.ancestors().find(|p| p.starts_with(".cache") && p.exists()).map(Path::to_path_buf),
    };
    if let Some(watch) = watch {
        println!("cargo:rerun-if-changed={}", watch.display());
    }
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("coast.shp");
    if src.is_file() {
        std::fs::copy(&src, &dest).unwrap_or_else(|e| fail(&format!("copying {}: {e}", src.display())));
    } else {
        std::fs::write(&dest, []).unwrap_or_else(|e| fail(&format!("writing {}: {e}", dest.display())));
        println!(
            "cargo:warning=no Natural Earth coastlines at {}: the PNG maps will have no coastlines \
             (run `bash scripts/natural-earth.sh` and then `touch build.rs`, or set HEALPIX_PSF_NATURAL_EARTH \
             to a .shp)",
            src.display()
        );
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    panic!("{msg}");
}
