//! The committed C header `include/healpix_psf.h` is what cbindgen makes of `src/ffi` today, and it
//! compiles as C99 and as C++. Regenerate it with `HPSF_BLESS=1 cargo test --release --test suite header::`.

use std::path::Path;
use std::process::Command;

fn generated() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let config = cbindgen::Config::from_file(Path::new(dir).join("cbindgen.toml")).expect("cbindgen.toml");
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not read the crate")
        .write(&mut out);
    String::from_utf8(out).expect("UTF-8 header")
}

#[test]
fn committed_header_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/healpix_psf.h");
    let now = generated();
    if std::env::var_os("HPSF_BLESS").is_some() {
        std::fs::write(&path, &now).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == now,
        "include/healpix_psf.h is stale: regenerate it with `HPSF_BLESS=1 cargo test --release --test suite header::` and commit it"
    );
    for name in ["hpsf_new_f64", "hpsf_fit_f32", "hpsf_last_error", "hpsf_params_init", "HPSF_STATUS_OK"] {
        assert!(now.contains(name), "{name} missing from the header");
    }
}

#[test]
fn header_compiles_as_c99_and_cxx() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let header = dir.join("include/healpix_psf.h");
    let tmp = std::env::temp_dir().join(format!("hpsf_header_{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let src = tmp.join("use.c");
    std::fs::write(
        &src,
        format!("#include \"{}\"\nint main(void) {{ return (int)HPSF_STATUS_OK; }}\n", header.display()),
    )
    .unwrap();
    for (compiler, args) in [
        ("cc", vec!["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only"]),
        ("c++", vec!["-x", "c++", "-std=c++11", "-Wall", "-Wextra", "-Werror", "-fsyntax-only"]),
    ] {
        match Command::new(compiler).args(&args).arg(&src).output() {
            Ok(o) => assert!(o.status.success(), "{compiler}: {}", String::from_utf8_lossy(&o.stderr)),
            Err(e) => println!("SKIP: {compiler} not found ({e})"),
        }
    }
}
