//! The C ABI from C: tests/c/capi_test.c, compiled against the committed header and linked to the
//! shared library, builds operators on golden cases, fits and resamples, compares with the reference
//! and checks the bad-input statuses; then the same under valgrind (no leaks, no invalid accesses).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Compiles the C program to a path of its own for each caller (tests run in parallel threads).
fn compile(tag: &str) -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = common::lib_dir();
    if !lib.join("libhealpix_psf.so").exists() {
        panic!("{} has no libhealpix_psf.so: build the cdylib first (cargo build --release)", lib.display());
    }
    let out = std::env::temp_dir().join(format!("hpsf_capi_test_{}_{tag}", std::process::id()));
    let status = Command::new("cc")
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", "-g"])
        .arg("-I")
        .arg(root.join("include"))
        .arg(root.join("tests/c/capi_test.c"))
        .arg("-L")
        .arg(&lib)
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(["-lhealpix_psf", "-lm", "-o"])
        .arg(&out)
        .status();
    match status {
        Ok(s) => {
            assert!(s.success(), "compiling tests/c/capi_test.c failed");
            Some(out)
        }
        Err(e) => {
            println!("SKIP: no C compiler `cc` ({e})");
            None
        }
    }
}

/// The program's arguments for a fixture: dir, level, npt, lam, CG iterations of the reference.
fn args(name: &str) -> Vec<String> {
    let case = common::Case::open(&common::fixtures_dir().join(name));
    vec![
        case.dir.display().to_string(),
        case.param("level").to_string(),
        case.param("Npt").to_string(),
        case.param("lam").to_string(),
        case.meta["result"]["cg_niters"].to_string(),
    ]
}

fn check_output(what: &str, out: &std::process::Output) {
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{what}:\n{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what} failed");
    assert!(text.lines().last().is_some_and(|l| l.ends_with(" passed, 0 failed")), "{what}: no clean summary line");
}

#[test]
fn c_program_matches_the_reference_and_rejects_bad_input() {
    let Some(exe) = compile("plain") else { return };
    for case in ["corner_l11_npt9_b3_nan", "regional_l10_npt9_b1"] {
        let mut a = args(case);
        if case == "regional_l10_npt9_b1" {
            // and a bounded fit against the reference's clip=("input", "input")
            let clip = args("clip_input_l11_b3_nan");
            a.extend([clip[0].clone(), clip[1].clone(), clip[3].clone()]);
        }
        let out = Command::new(&exe).args(a).env("LD_LIBRARY_PATH", common::lib_dir()).output().unwrap();
        check_output(case, &out);
    }
}

#[test]
fn c_program_is_clean_under_valgrind() {
    let Some(exe) = compile("valgrind") else { return };
    let mut cmd = Command::new("valgrind");
    // this build's library, not an older one on cargo's LD_LIBRARY_PATH (e.g. target/<profile>)
    cmd.env("LD_LIBRARY_PATH", common::lib_dir());
    cmd.args([
        "--leak-check=full",
        "--errors-for-leak-kinds=definite,indirect",
        "--show-possibly-lost=no",
        "--error-exitcode=99",
    ]);
    match cmd.arg(&exe).args(args("regional_l10_npt9_b1")).output() {
        Ok(out) => {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.code() != Some(99), "valgrind found errors:\n{err}");
            check_output("valgrind", &out);
        }
        Err(e) => println!("SKIP: valgrind not found ({e})"),
    }
}

/// The Fortran module and tests/fortran/test_healpix_psf.f90, compiled with gfortran and linked to
/// the shared library (SKIP without gfortran; CI installs it).
#[test]
fn fortran_program_matches_the_reference_and_rejects_bad_input() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = common::lib_dir();
    let tmp = std::env::temp_dir().join(format!("hpsf_fortran_{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let module = Command::new("gfortran")
        .args(["-std=f2018", "-Wall", "-Werror", "-Wno-unused-dummy-argument", "-c", "-J"])
        .arg(&tmp)
        .arg(root.join("include/healpix_psf.f90"))
        .arg("-o")
        .arg(tmp.join("healpix_psf.o"))
        .status();
    match module {
        Err(e) => {
            println!("SKIP: gfortran not found ({e})");
            return;
        }
        Ok(s) => assert!(s.success(), "compiling include/healpix_psf.f90 failed"),
    }
    let exe = tmp.join("test_healpix_psf");
    let status = Command::new("gfortran")
        .args(["-std=f2018", "-Wall", "-Werror", "-J"])
        .arg(&tmp)
        .arg(root.join("tests/fortran/test_healpix_psf.f90"))
        .arg(tmp.join("healpix_psf.o"))
        .arg("-L")
        .arg(&lib)
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(["-lhealpix_psf", "-o"])
        .arg(&exe)
        .status()
        .unwrap();
    assert!(status.success(), "compiling tests/fortran/test_healpix_psf.f90 failed");
    for case in ["corner_l11_npt9_b3_nan", "regional_l10_npt9_b1"] {
        // in the temporary folder, where the program saves an operator
        let out = Command::new(&exe)
            .args(args(case))
            .current_dir(&tmp)
            .env("LD_LIBRARY_PATH", common::lib_dir())
            .output()
            .unwrap();
        check_output(&format!("fortran {case}"), &out);
    }
}
