//! Saving and loading an operator: a loaded operator equals the saved one bit for bit (links,
//! weights, fits, restricted output, masks), on every golden case; every damaged, truncated or
//! foreign file is refused with `Error::BadOperatorFile` (never a panic, never an operator).

use crate::common;
use crate::common::synth::{regional, regional_grid};
use healpix_psf::{
    saved_precision, Area, Bound, Device, Error, FitOptions, MissingData, Params, PsfResampler, Real, FORMAT_VERSION,
};

fn bits<F: Real>(v: &[F]) -> Vec<u64> {
    v.iter().map(|x| x.to_f64().to_bits()).collect()
}

/// Everything an operator exposes is the same, to the bit.
fn assert_same<F: Real>(a: &PsfResampler<F>, b: &PsfResampler<F>) {
    assert_eq!((a.n(), a.n_used(), a.k(), a.npt(), a.nnz()), (b.n(), b.n_used(), b.k(), b.npt(), b.nnz()));
    assert_eq!((a.level(), a.nest(), a.ellipsoid(), a.rings()), (b.level(), b.nest(), b.ellipsoid(), b.rings()));
    assert_eq!(a.sigma_m().to_bits(), b.sigma_m().to_bits());
    assert_eq!((a.radius().to_bits(), a.threshold().to_bits()), (b.radius().to_bits(), b.threshold().to_bits()));
    assert_eq!(a.cell_ids(), b.cell_ids());
    assert_eq!(a.hi(), b.hi());
    assert_eq!(a.sample_order(), b.sample_order());
    assert_eq!(bits(&a.d_m()), bits(&b.d_m()));
    assert_eq!(bits(&a.area()), bits(&b.area()));
    assert_eq!(bits(a.cell_weight()), bits(b.cell_weight()));
    assert_eq!(bits(&a.sample_weight()), bits(&b.sample_weight()));
    let (ma, mb) = (a.m_triplets(), b.m_triplets());
    assert_eq!((ma.rows, ma.cols, bits(&ma.vals)), (mb.rows, mb.cols, bits(&mb.vals)));
    let (ta, tb) = (a.mt_triplets(), b.mt_triplets());
    assert_eq!((ta.rows, ta.cols, bits(&ta.vals)), (tb.rows, tb.cols, bits(&tb.vals)));
    assert_eq!(a.uncomputable_cells(), b.uncomputable_cells());
    let (ia, ib) = (a.build_info(), b.build_info());
    assert_eq!((ia.n_sample_cells, ia.n_candidates, ia.n_kept), (ib.n_sample_cells, ib.n_candidates, ib.n_kept));
    assert_eq!((ia.n_partial_rows, ia.n_empty_rows), (ib.n_partial_rows, ib.n_empty_rows));
}

fn round_trip<F: Real>(op: &PsfResampler<F>) -> PsfResampler<F> {
    let mut file = Vec::new();
    op.save(&mut file).unwrap();
    assert_eq!(file, op.to_bytes());
    PsfResampler::<F>::load(&mut file.as_slice(), Device::Cpu, 0).unwrap()
}

/// Two rows of a smooth field with a few NaN.
fn values<F: Real>(lon: &[f64], lat: &[f64]) -> Vec<F> {
    (0..2)
        .flat_map(|r| {
            lon.iter().zip(lat).enumerate().map(move |(i, (x, y))| {
                if i % 97 == r {
                    F::from_f64(f64::NAN)
                } else {
                    F::from_f64((x * 3.0).sin() + (y * (2.0 + r as f64)).cos())
                }
            })
        })
        .collect()
}

/// The same fits, to the bit, with the options most likely to touch stored state.
fn assert_same_fits<F: Real>(a: &PsfResampler<F>, b: &PsfResampler<F>, val: &[F]) {
    let plain = FitOptions::<F> { lam: 1e-3, max_iter: 40, return_info: true, ..FitOptions::default() };
    let bounded =
        FitOptions::<F> { lower: Bound::Input, upper: Bound::Value(1.2), conservative: true, ..plain.clone() };
    let zero = FitOptions::<F> { missing: MissingData::ZeroFill, ..plain.clone() };
    for o in [plain, bounded, zero] {
        let (fa, ra) = a.fit_resample(val, &o).unwrap();
        let (fb, rb) = b.fit_resample(val, &o).unwrap();
        assert_eq!(bits(&fa.hval), bits(&fb.hval));
        assert_eq!(bits(&ra), bits(&rb));
        assert_eq!(fa.info.unwrap().row_iterations, fb.info.unwrap().row_iterations);
    }
}

#[test]
fn a_loaded_operator_equals_the_saved_one_on_synthetic_cases() {
    let (lon, lat) = regional(4000, 11, 3.0, 5);
    let (glon, glat) = regional_grid(3000, 10, 2.0);
    let mask: Vec<bool> = (0..lon.len()).map(|i| i % 11 != 3).collect();
    let out_cells: Vec<u64> = {
        let full = PsfResampler::<f64>::new(&lon, &lat, &Params::new(11)).unwrap();
        // every third cell, and cells far away that no sample supports
        full.cell_ids().iter().step_by(3).copied().chain([5, 17]).collect()
    };
    let cases: Vec<(&str, &[f64], &[f64], Params)> = vec![
        ("scatter", &lon, &lat, Params::new(11)),
        ("grid, spacing areas, ring ids", &glon, &glat, Params { nest: false, area: Area::Spacing, ..Params::new(10) }),
        (
            "sphere, npt 16, own rings",
            &lon,
            &lat,
            Params {
                npt: 16,
                ellipsoid: healpix_psf::Ellipsoid::Sphere,
                ring_search_max: Some(6),
                sigma_m: Some(4000.0),
                ..Params::new(11)
            },
        ),
        ("sample mask", &lon, &lat, Params { sample_mask: Some(mask.clone()), ..Params::new(11) }),
        (
            "out_cell_ids, filled",
            &lon,
            &lat,
            Params {
                out_cell_ids: Some(out_cells.clone()),
                fill_missing_out_cells: true,
                threshold: 0.5,
                ..Params::new(11)
            },
        ),
        ("out_cell_ids", &lon, &lat, Params { out_cell_ids: Some(out_cells.clone()), ..Params::new(11) }),
    ];
    for (name, lon, lat, p) in cases {
        eprintln!("{name}");
        let a = PsfResampler::<f64>::new(lon, lat, &p).unwrap();
        let b = round_trip(&a);
        assert_same(&a, &b);
        assert_same_fits(&a, &b, &values::<f64>(lon, lat));
        let a = PsfResampler::<f32>::new(lon, lat, &p).unwrap();
        let b = round_trip(&a);
        assert_same(&a, &b);
        assert_same_fits(&a, &b, &values::<f32>(lon, lat));
        // saved again, the same bytes
        assert_eq!(a.to_bytes(), b.to_bytes());
    }
}

#[test]
fn a_loaded_operator_equals_the_saved_one_on_every_golden_case() {
    for case in common::all_cases() {
        if case.is_f32() {
            let a = case.build::<f32>().unwrap();
            assert_same(&a, &round_trip(&a));
        } else {
            let a = case.build::<f64>().unwrap();
            assert_same(&a, &round_trip(&a));
        }
    }
}

#[test]
fn from_links_operators_round_trip() {
    let p = Params { npt: 2, sigma_m: Some(1000.0), out_cell_ids: Some(vec![]), ..Params::new(8) };
    let a = PsfResampler::<f64>::from_links(
        2,
        &[10, 11],
        &[0, 1, 1, -1],
        &[0.0, 500.0, 100.0, f64::INFINITY],
        &[1.0, 2.0],
        &p,
    )
    .unwrap();
    assert_same(&a, &round_trip(&a));
}

fn small() -> PsfResampler<f32> {
    let (lon, lat) = regional(300, 9, 2.0, 1);
    PsfResampler::<f32>::new(&lon, &lat, &Params::new(9)).unwrap()
}

fn refused(bytes: &[u8], want: &str) {
    match PsfResampler::<f32>::load(&mut &bytes[..], Device::Cpu, 1) {
        Err(Error::BadOperatorFile(m)) => assert!(m.contains(want), "{m:?} should say {want:?}"),
        Err(e) => panic!("{e:?}: expected BadOperatorFile({want})"),
        Ok(_) => panic!("a damaged file was loaded ({want})"),
    }
}

/// The CRC-32 of a file's content, rewritten after an edit (to reach the checks behind it).
fn reseal(mut f: Vec<u8>) -> Vec<u8> {
    let n = f.len() - 4;
    let crc = crc32(&f[..n]);
    f[n..].copy_from_slice(&crc.to_le_bytes());
    f
}

/// CRC-32 (IEEE, reflected, polynomial 0xEDB88320), bit by bit: independent of the library's.
fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 };
        }
    }
    !c
}

#[test]
fn the_file_layout_is_as_documented() {
    let op = small();
    let f = op.to_bytes();
    assert_eq!(&f[..8], b"HPSF-OP\n");
    assert_eq!(u32::from_le_bytes(f[8..12].try_into().unwrap()), FORMAT_VERSION);
    assert_eq!(u32::from_le_bytes(f[12..16].try_into().unwrap()), 4);
    let payload = u64::from_le_bytes(f[16..24].try_into().unwrap()) as usize;
    assert_eq!(f.len(), 24 + payload + 4);
    assert_eq!(u32::from_le_bytes(f[f.len() - 4..].try_into().unwrap()), crc32(&f[..f.len() - 4]));
    // links and distances dominate: N·npt·(4 + 4) bytes, and a little more
    let links = op.n() * op.npt() * 8;
    assert!(payload >= links && payload < links + op.n() * 8 + op.k() * 8 + 1000, "{payload} vs {links}");
    assert_eq!(saved_precision(&f).unwrap(), "f32");
}

#[test]
fn every_damaged_byte_is_refused() {
    let f = small().to_bytes();
    for i in 0..f.len() {
        let mut g = f.clone();
        g[i] ^= 0x20;
        let r = PsfResampler::<f32>::load(&mut g.as_slice(), Device::Cpu, 1);
        assert!(matches!(r, Err(Error::BadOperatorFile(_))), "byte {i}: {:?}", r.err());
    }
}

#[test]
fn truncated_foreign_and_other_version_files_are_refused() {
    let f = small().to_bytes();
    for len in [0, 7, 8, 23, 24, 25, f.len() / 2, f.len() - 5, f.len() - 1] {
        let want = if len < 24 { "not a healpix-psf operator file" } else { "truncated" };
        refused(&f[..len], want);
    }
    refused(b"CDF\x01 a NetCDF file, say, of some length", "not a healpix-psf operator file");
    let mut v2 = f.clone();
    v2[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    refused(&v2, &format!("format version {}", FORMAT_VERSION + 1));
    let mut float = f.clone();
    float[12] = 2;
    refused(&float, "bytes per float");
    // an f32 file loaded as f64
    match PsfResampler::<f64>::load(&mut f.as_slice(), Device::Cpu, 1) {
        Err(Error::BadOperatorFile(m)) => assert!(m.contains("f32 operator, loaded as f64"), "{m}"),
        r => panic!("{:?}", r.err()),
    }
    // a payload longer than its arrays (4 more bytes, the checksum made right) is refused
    let mut long = f.clone();
    let p = u64::from_le_bytes(long[16..24].try_into().unwrap()) + 4;
    long[16..24].copy_from_slice(&p.to_le_bytes());
    long.extend_from_slice(&[0; 4]);
    refused(&reseal(long), "bytes after the last array");
    // a payload length far beyond the file: truncated, without allocating it
    let mut huge = f.clone();
    huge[16..24].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    refused(&huge, "truncated");
}

#[test]
fn consistent_checksums_over_wrong_content_are_refused() {
    let op = small();
    let f = op.to_bytes();
    // the offsets of the payload's fixed fields (see `payload` in src/operator/file.rs)
    let (level, ellipsoid, rings, npt, sigma, n) = (24, 26, 28, 44, 52, 76);
    let counts = n + 8 + 5 * 8 + 5 * 8;
    let edit = |at: usize, bytes: &[u8]| {
        let mut g = f.clone();
        g[at..at + bytes.len()].copy_from_slice(bytes);
        reseal(g)
    };
    refused(&edit(level, &[30]), "saved parameters are invalid");
    refused(&edit(ellipsoid, &[7]), "unknown ellipsoid");
    refused(&edit(rings, &u32::MAX.to_le_bytes()), "saved parameters are invalid");
    refused(&edit(npt, &0u64.to_le_bytes()), "saved parameters are invalid");
    refused(&edit(sigma, &(-1.0f64).to_le_bytes()), "saved parameters are invalid");
    refused(&edit(n, &1u64.to_le_bytes()), "samples in use of N = 1");
    // the number of cell ids, then its first id made larger than the second
    let k = u64::from_le_bytes(f[counts..counts + 8].try_into().unwrap()) as usize;
    assert_eq!(k, op.k());
    refused(&edit(counts + 8, &u64::MAX.to_le_bytes()), "not an operator");
    refused(&edit(counts, &(k as u64 + 1000).to_le_bytes()), "the file ends inside");
    let order = counts + 8 + 8 * k;
    refused(&edit(order + 8, &op.sample_order()[1].to_le_bytes()), "appears twice");
    refused(&edit(order + 8, &(op.n() as u32).to_le_bytes()), "≥ N");
    let hi = order + 8 + 4 * op.n_used();
    refused(&edit(hi + 8, &(op.k() as i32).to_le_bytes()), "cell index < K");
    refused(&edit(hi + 8, &(-2i32).to_le_bytes()), "cell index < K");
    let d = hi + 8 + 4 * op.n_used() * op.npt();
    refused(&edit(d + 8, &(-5.0f32).to_le_bytes()), "linked distance must be ≥ 0");
    let area = d + 8 + 4 * op.n_used() * op.npt();
    refused(&edit(area + 8, &f32::NAN.to_le_bytes()), "areas must be finite");
}

#[test]
fn files_are_written_whole_and_read_with_clear_errors() {
    let dir = std::env::temp_dir().join(format!("hpsf-save-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let op = small();
    let path = dir.join("op.hpsf");
    op.save_file(&path).unwrap();
    let back = PsfResampler::<f32>::load_file(&path, Device::Cpu, 2).unwrap();
    assert_same(&op, &back);
    // no temporary file left beside it
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("op.hpsf")]);
    // a missing file, a directory for a file, a damaged file (the path in the message)
    match PsfResampler::<f32>::load_file(dir.join("none.hpsf"), Device::Cpu, 0) {
        Err(Error::Io { path, .. }) => assert!(path.ends_with("none.hpsf")),
        r => panic!("{:?}", r.err()),
    }
    assert!(matches!(op.save_file(dir.join("no/such/dir/op.hpsf")), Err(Error::Io { .. })));
    std::fs::write(dir.join("bad.hpsf"), b"HPSF-OP\n").unwrap();
    match PsfResampler::<f32>::load_file(dir.join("bad.hpsf"), Device::Cpu, 0) {
        Err(Error::BadOperatorFile(m)) => assert!(m.contains("bad.hpsf"), "{m}"),
        r => panic!("{:?}", r.err()),
    }
    // a device this build lacks, or a thread count that cannot be made
    if !cfg!(feature = "cuda") {
        assert!(matches!(PsfResampler::<f32>::load_file(&path, Device::Cuda(0), 0), Err(Error::DeviceUnavailable(_))));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
