//! The Julia binding, bindings/julia/HealpixPsf.jl: run for real where a `julia` is on the PATH
//! (`scripts/julia-setup.sh` unpacks Julia 1.5.3 from Debian bullseye; `.ci/run` does): golden cases
//! built, fitted and resampled through the wrapper against the reference, bad input, finalizers
//! (bindings/julia/test/runtests.jl). And checked statically against the generated header: every
//! exported C function has exactly one `ccall` wrapper whose return and argument types map to its
//! prototype, and the Julia structs have the C structs' fields in the same order and types.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

/// The header without comments.
fn header() -> String {
    let h = read("include/healpix_psf.h");
    let mut out = String::new();
    let mut rest = h.as_str();
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        rest = &rest[i + 2..];
        rest = &rest[rest.find("*/").map_or(rest.len(), |j| j + 2)..];
    }
    out.push_str(rest);
    // drop preprocessor lines and the C++ `extern "C" { ... }` wrapper
    out.lines()
        .filter(|l| {
            !l.contains('#') && !l.contains("extern \"C\"") && !l.trim_start().starts_with('}') || l.contains("} hpsf_")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The Julia type a C type must have in a `ccall` (pointers to structs may be `Ptr` or `Ref`).
fn julia_type(c: &str) -> Vec<String> {
    let c = c.split_whitespace().collect::<Vec<_>>().join(" ").replace(" *", "*").replace("const ", "");
    let scalar = |t: &str| -> Option<&str> {
        Some(match t {
            "double" => "Float64",
            "float" => "Float32",
            "size_t" => "Csize_t",
            "int32_t" => "Int32",
            "uint64_t" => "UInt64",
            "int64_t" => "Int64",
            "uint32_t" => "UInt32",
            "uint8_t" => "UInt8",
            "hpsf_status" => "Cint",
            "void" => "Cvoid",
            "hpsf_params" => "HpsfParams",
            "hpsf_fit_options" => "HpsfFitOptions",
            "hpsf_fit_info" => "HpsfFitInfo",
            "hpsf_op_f32" | "hpsf_op_f64" => "Cvoid",
            _ => return None,
        })
    };
    match c.as_str() {
        "char*" => return vec!["Cstring".into()],
        "hpsf_op_f32**" | "hpsf_op_f64**" => return vec!["Ptr{Ptr{Cvoid}}".into()],
        _ => {}
    }
    if let Some(base) = c.strip_suffix('*') {
        let inner = scalar(base).unwrap_or_else(|| panic!("unmapped C type {c}"));
        let mut v = vec![format!("Ptr{{{inner}}}")];
        if base.starts_with("hpsf_") && !base.starts_with("hpsf_op") {
            v.push(format!("Ref{{{inner}}}"));
        }
        v
    } else {
        vec![scalar(&c).unwrap_or_else(|| panic!("unmapped C type {c}")).into()]
    }
}

/// name -> (return type, argument types) of every prototype in the header.
fn c_functions() -> BTreeMap<String, (String, Vec<String>)> {
    let h = header();
    let mut out = BTreeMap::new();
    for decl in h.split(';') {
        let d = decl.split_whitespace().collect::<Vec<_>>().join(" ");
        let Some(paren) = d.find('(').filter(|_| !d.contains("typedef")) else { continue };
        let head = d[..paren].trim_end();
        let open = head.rfind([' ', '*']).map_or(0, |i| i + 1);
        let name = head[open..].to_string();
        if !name.starts_with("hpsf_") {
            continue;
        }
        let ret = head[..open].trim().to_string();
        let args = d[paren + 1..d.rfind(')').unwrap()].trim();
        let types = if args == "void" {
            vec![]
        } else {
            args.split(',')
                .map(|a| {
                    let a = a.trim();
                    let cut = a.rfind(['*', ' ']).unwrap();
                    a[..=cut].trim().to_string()
                })
                .collect()
        };
        out.insert(name, (ret, types));
    }
    out
}

/// name -> (return type, argument types) of every `ccall((:name, libhpsf), Ret, (Args...), ...)`.
fn julia_ccalls(src: &str) -> BTreeMap<String, Vec<(String, Vec<String>)>> {
    let mut out: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for line in src.lines().filter(|l| l.contains("ccall((:")) {
        let rest = &line[line.find("ccall((:").unwrap() + 8..];
        let name = rest[..rest.find(',').unwrap()].to_string();
        let rest = &rest[rest.find("), ").unwrap() + 3..];
        let ret = rest[..rest.find(',').unwrap()].trim().to_string();
        let rest = &rest[rest.find('(').unwrap() + 1..];
        // the argument tuple, up to its matching parenthesis
        let mut depth = 0;
        let mut end = 0;
        for (i, ch) in rest.char_indices() {
            match ch {
                '(' | '{' => depth += 1,
                '}' => depth -= 1,
                ')' if depth == 0 => {
                    end = i;
                    break;
                }
                ')' => depth -= 1,
                _ => {}
            }
        }
        let mut args = Vec::new();
        let (mut cur, mut d) = (String::new(), 0);
        for ch in rest[..end].chars() {
            match ch {
                '{' => {
                    d += 1;
                    cur.push(ch)
                }
                '}' => {
                    d -= 1;
                    cur.push(ch)
                }
                ',' if d == 0 => {
                    args.push(cur.trim().to_string());
                    cur.clear()
                }
                _ => cur.push(ch),
            }
        }
        if !cur.trim().is_empty() {
            args.push(cur.trim().to_string());
        }
        out.entry(name).or_default().push((ret, args));
    }
    out
}

/// bindings/julia/test/runtests.jl on two golden cases (arguments as the C test's: dir, level, npt,
/// lam), against the library cargo built for this test.
#[test]
fn julia_runs_the_golden_cases() {
    let given = std::env::var("HPSF_JULIA").ok();
    let julia = given.clone().unwrap_or_else(|| "julia".into());
    let version = match std::process::Command::new(&julia).arg("--version").output() {
        Ok(v) => v,
        // a Julia named by HPSF_JULIA must run
        Err(e) if given.is_some() => panic!("HPSF_JULIA={julia} does not run: {e}"),
        Err(_) => {
            println!("SKIP: no `julia` on the PATH (bash scripts/julia-setup.sh provides Julia 1.5.3)");
            return;
        }
    };
    let lib = common::lib_dir().join("libhealpix_psf.so");
    assert!(lib.exists(), "{} is missing: build the cdylib first", lib.display());
    let mut args =
        vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("bindings/julia/test/runtests.jl").display().to_string()];
    for name in ["regional_l10_npt9_b1", "corner_l11_npt9_b3_nan"] {
        let case = common::Case::open(&common::fixtures_dir().join(name));
        args.extend([
            case.dir.display().to_string(),
            case.param("level").to_string(),
            case.param("Npt").to_string(),
            format!("{:?}", case.param("lam").as_f64().expect("lam")),
        ]);
    }
    let out = std::process::Command::new(&julia)
        .arg("--startup-file=no")
        .args(&args)
        .env("HEALPIX_PSF_LIB", &lib)
        .output()
        .expect("julia runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{}{stdout}{stderr}", String::from_utf8_lossy(&version.stdout));
    assert!(out.status.success(), "the Julia test failed ({:?})", out.status);
    assert!(
        stdout.contains("regional_l10_npt9_b1: hval within") && stdout.contains("corner_l11_npt9_b3_nan: hval within")
    );
}

#[test]
fn every_c_function_has_a_matching_julia_wrapper() {
    let c = c_functions();
    assert!(c.len() >= 30, "parsed only {} prototypes from the header", c.len());
    let jl = julia_ccalls(&read("bindings/julia/HealpixPsf.jl"));
    // the distributed operator (HPSF_MPI) is for MPI programs (C, C++, Fortran); Julia would reach
    // it through MPI.jl's communicators, which the Julia binding does not take (yet)
    for (name, (ret, args)) in c.iter().filter(|(name, _)| !name.starts_with("hpsf_mpi_")) {
        let calls = jl.get(name).unwrap_or_else(|| panic!("{name} has no Julia ccall wrapper"));
        assert_eq!(calls.len(), 1, "{name}: {} ccalls", calls.len());
        let (jret, jargs) = &calls[0];
        assert!(julia_type(ret).contains(jret), "{name}: returns {jret} in Julia, {ret} in C");
        assert_eq!(jargs.len(), args.len(), "{name}: {} arguments in Julia, {} in C", jargs.len(), args.len());
        for (i, (j, t)) in jargs.iter().zip(args).enumerate() {
            assert!(julia_type(t).contains(j), "{name}, argument {}: {j} in Julia, {t} in C", i + 1);
        }
    }
    for name in jl.keys() {
        assert!(c.contains_key(name), "Julia wraps {name}, which the header does not declare");
    }
}

/// Fields (type, name) of a C `typedef struct {...} name;` and of a Julia `struct Name ... end`.
fn c_struct(h: &str, name: &str) -> Vec<(String, String)> {
    let end = h.find(&format!("}} {name};")).unwrap_or_else(|| panic!("no struct {name} in the header"));
    let start = h[..end].rfind("typedef struct {").unwrap() + "typedef struct {".len();
    h[start..end]
        .split(';')
        .map(|f| f.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|f| !f.is_empty())
        .map(|f| {
            let cut = f.rfind(['*', ' ']).unwrap();
            (f[..=cut].trim().to_string(), f[cut + 1..].trim().to_string())
        })
        .collect()
}

fn julia_struct(src: &str, name: &str) -> Vec<(String, String)> {
    let start = src.find(&format!("struct {name}\n")).unwrap_or_else(|| panic!("no Julia struct {name}"));
    let body = &src[start..];
    let body = &body[body.find('\n').unwrap() + 1..body.find("\nend").unwrap()];
    body.lines()
        .map(|l| {
            let (n, t) = l.trim().split_once("::").unwrap();
            (t.trim().to_string(), n.trim().to_string())
        })
        .collect()
}

#[test]
fn julia_structs_match_the_c_structs() {
    let h = header();
    let jl = read("bindings/julia/HealpixPsf.jl");
    for (c_name, j_name) in
        [("hpsf_params", "HpsfParams"), ("hpsf_fit_options", "HpsfFitOptions"), ("hpsf_fit_info", "HpsfFitInfo")]
    {
        let c = c_struct(&h, c_name);
        let j = julia_struct(&jl, j_name);
        assert_eq!(c.len(), j.len(), "{c_name}: {} fields in C, {} in Julia", c.len(), j.len());
        for ((ct, cn), (jt, jn)) in c.iter().zip(&j) {
            assert_eq!(cn, jn, "{c_name}: field order");
            let ok = julia_type(ct).contains(jt) || (ct.ends_with('*') && jt.starts_with("Ptr{"));
            assert!(ok, "{c_name}.{cn}: {ct} in C, {jt} in Julia");
        }
    }
}
