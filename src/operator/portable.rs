//! The construction steps of `csrc/construct.h` — the code the CUDA construction runs one thread per
//! distinct cell or sample — called on the host, so that the tests below hold them to the CPU
//! stages of this module (`samples`, `keep`, `search`, `assemble`) in CI, without a GPU: the same
//! unit vectors, candidate cells, weight sums (the GPU's order of additions), kept cells, links,
//! distances and links by cell, bit for bit.
#![cfg(test)]

use super::assemble::csr_pattern;
use super::keep::{candidate_sums, keep_stage, KeptCells};
use super::samples::{Samples, BLOCK};
use super::search::{nearest, prune};
use super::Config;
use crate::geometry::portable::ffi;
use crate::geometry::portable::tests::Rng;
use crate::geometry::{distance_from_chord2_m, Ellipsoid, Grid};
use crate::Params;

fn sample_xyz(lon: f64, lat: f64) -> [f64; 3] {
    let mut out = [0.0; 3];
    // SAFETY: out holds 3 values.
    unsafe { ffi::hpsf_con_sample_xyz_host(lon, lat, out.as_mut_ptr()) };
    out
}

fn cell_xyz(level: u8, id: u64, wgs84: bool) -> [f64; 3] {
    let mut out = [0.0; 3];
    // SAFETY: out holds 3 values.
    unsafe { ffi::hpsf_con_cell_xyz_host(level as i32, id, wgs84 as i32, out.as_mut_ptr()) };
    out
}

fn keep_candidates(level: u8, cell: u64, ring_weight: u32) -> Vec<u64> {
    let mut out = vec![0u64; (2 * ring_weight as usize + 1).pow(2)];
    // SAFETY: out holds (2·ring_weight + 1)² ids, what the header writes.
    unsafe { ffi::hpsf_con_keep_candidates_host(level as i32, cell, ring_weight, out.as_mut_ptr()) };
    out
}

fn weight_sum(xyz: &[[f64; 3]], c: &[f64; 3], radius: f64, s2: f64) -> f64 {
    // SAFETY: xyz holds xyz.len() unit vectors, c one.
    unsafe { ffi::hpsf_con_weight_sum_host(xyz.as_flattened().as_ptr(), xyz.len() as i64, c.as_ptr(), radius, s2) }
}

/// The kept cells as the header's search reads them.
struct KeptView {
    nested: Vec<u64>,
    index: Vec<u32>,
    xyz: Vec<[f64; 3]>,
}

/// The header's search for one sample: (squared chord, keep index) of its links, nearest first.
fn search(level: u8, cfg: &Config, kept: &KeptView, cell: u64, at: &[f64; 3]) -> Vec<(f64, u32)> {
    let (mut c2, mut k) = (vec![0.0; cfg.npt], vec![0u32; cfg.npt]);
    // SAFETY: the kept arrays hold len entries (xyz 3 each, by keep index < len); c2 and k npt.
    let found = unsafe {
        ffi::hpsf_con_search_host(
            level as i32,
            cfg.ring_search_init,
            cfg.ring_search_max,
            cfg.npt as i32,
            kept.nested.as_ptr(),
            kept.index.as_ptr(),
            kept.xyz.as_flattened().as_ptr(),
            kept.nested.len() as i64,
            cell,
            at.as_ptr(),
            c2.as_mut_ptr(),
            k.as_mut_ptr(),
        )
    };
    c2.into_iter().zip(k).take(found as usize).collect()
}

/// The links by cell as the GPU makes them: each link keyed by the header (its cell, no link last),
/// sorted stably, rows found by the header's lower bound. (ptr, sample positions).
fn csr_like_the_gpu(hi: &[i32], npt: usize, k: usize) -> (Vec<usize>, Vec<u32>) {
    // SAFETY: pure arithmetic.
    let mut keyed: Vec<(u32, u32)> =
        hi.iter().enumerate().map(|(q, &h)| (unsafe { ffi::hpsf_con_link_key_host(h) }, (q / npt) as u32)).collect();
    keyed.sort_by_key(|&(key, _)| key); // stable, as CUB's radix sort
    let keys: Vec<u32> = keyed.iter().map(|&(key, _)| key).collect();
    // SAFETY: keys holds len values.
    let ptr: Vec<usize> = (0..=k)
        .map(|c| unsafe { ffi::hpsf_con_row_start_host(keys.as_ptr(), keys.len() as i64, c as i64) } as usize)
        .collect();
    let sample = keyed[..ptr[k]].iter().map(|&(_, p)| p).collect();
    (ptr, sample)
}

/// Samples of a test case: a random scatter over a lon/lat box, and the centres of some cells of
/// the grid (exactly equidistant candidates: the tie rule) when `centres`.
fn case(level: u8, n: usize, lon0: f64, lat0: f64, span: f64, seed: u64, centres: bool) -> (Vec<f64>, Vec<f64>) {
    let mut rng = Rng(seed);
    let (mut lon, mut lat) = (Vec::new(), Vec::new());
    for _ in 0..n {
        lon.push(lon0 + span * rng.unit());
        lat.push((lat0 + span * rng.unit()).clamp(-90.0, 90.0));
    }
    if centres {
        let grid = Grid::new(level, true, Ellipsoid::Sphere).unwrap();
        for i in 0..n / 10 {
            let c = grid.cell(lon[i], lat[i]).unwrap();
            let (x, y) = grid.center(c).unwrap();
            lon.push(x);
            lat.push(y);
        }
    }
    (lon, lat)
}

/// The header's steps against the CPU stages on one case; returns the number of links compared.
fn compare(lon: &[f64], lat: &[f64], p: &Params) -> usize {
    let grid = Grid::new(p.level, p.nest, p.ellipsoid).unwrap();
    let cfg = Config::resolve(p).unwrap();
    let wgs84 = p.ellipsoid == Ellipsoid::Wgs84;
    let smp = Samples::new(&grid, lon, lat);
    for (pos, &i) in smp.order.iter().enumerate() {
        let want = smp.xyz[pos];
        let got = sample_xyz(lon[i as usize], lat[i as usize]);
        assert_eq!(got.map(f64::to_bits), want.map(f64::to_bits), "sample {i}");
    }

    // keep: each (distinct cell, slot)'s share; per candidate the shares of a block of distinct
    // cells added in (cell, slot) order, then the block partials in block order (as the GPU does)
    // SAFETY: returns a constant.
    assert_eq!(BLOCK, unsafe { ffi::hpsf_con_keep_block_host() } as usize, "the keep stage's blocks");
    let s2 = cfg.sigma_m * cfg.sigma_m;
    let mut shares: Vec<(u64, usize, f64)> = Vec::new();
    for (u, &cell) in smp.unique.iter().enumerate() {
        let xyz = &smp.xyz[smp.positions(u)];
        let want = grid.kth_neighbourhood_nested(cell, cfg.ring_weight);
        let cands = keep_candidates(p.level, cell, cfg.ring_weight);
        assert_eq!(&cands[..want.len()], &want[..], "candidates of cell {cell}");
        assert!(cands[want.len()..].iter().all(|&c| c == want[want.len() - 1]), "padding of cell {cell}");
        for c in cands {
            let centre = cell_xyz(p.level, c, wgs84);
            assert_eq!(centre.map(f64::to_bits), grid.center_nested_xyz(c).map(f64::to_bits), "centre of {c}");
            shares.push((c, u / BLOCK, weight_sum(xyz, &centre, cfg.radius, s2)));
        }
    }
    shares.sort_by_key(|&(c, _, _)| c); // stable: (cell, slot) order within a candidate
    let mut partials: Vec<(u64, usize, f64)> = Vec::new();
    for (c, b, w) in shares {
        match partials.last_mut() {
            Some((last, block, s)) if *last == c && *block == b => *s += w,
            _ => partials.push((c, b, w)),
        }
    }
    let mut sums: Vec<(u64, f64)> = Vec::new();
    for (c, _, w) in partials {
        match sums.last_mut() {
            Some((last, s)) if *last == c => *s += w,
            _ => sums.push((c, w)),
        }
    }
    let cpu_sums = candidate_sums(&grid, &cfg, &smp);
    assert_eq!(sums.len(), cpu_sums.len(), "candidate cells");
    for (&(c, s), &(cc, cs)) in sums.iter().zip(&cpu_sums) {
        assert_eq!((c, s.to_bits()), (cc, cs.to_bits()), "weight sum of candidate {c}: {s:e} against {cs:e}");
    }
    let cpu = keep_stage(&grid, &cfg, &smp).unwrap();
    assert_eq!(sums.len(), cpu.n_candidates, "candidate cells");
    let kept: Vec<u64> = sums.iter().filter(|&&(_, s)| s >= cfg.threshold).map(|&(c, _)| c).collect();
    assert_eq!(kept, cpu.nested, "kept cells");

    // search: every sample's links and distances
    let index = KeptCells::index(&grid, kept.clone());
    let view = KeptView {
        index: kept.iter().map(|&c| index.get(c).expect("kept")).collect(),
        nested: kept,
        xyz: index.xyz.clone(),
    };
    let found = nearest::<f64>(&grid, &cfg, &smp, &index);
    let npt = cfg.npt;
    let mut links = 0;
    for (u, &cell) in smp.unique.iter().enumerate() {
        for pos in smp.positions(u) {
            let got = search(p.level, &cfg, &view, cell, &smp.xyz[pos]);
            let (hi, d) = (&found.hi[pos * npt..(pos + 1) * npt], &found.d[pos * npt..(pos + 1) * npt]);
            for t in 0..npt {
                match got.get(t) {
                    Some(&(c2, k)) => {
                        assert_eq!(hi[t], k as i32, "link {t} of sample position {pos}");
                        let dist = distance_from_chord2_m(c2, cfg.radius);
                        // SAFETY: pure arithmetic.
                        let header = unsafe { ffi::hpsf_con_distance_host(c2, cfg.radius) };
                        assert_eq!(dist.to_bits(), header.to_bits());
                        assert_eq!(d[t].to_bits(), dist.to_bits(), "distance {t} of sample position {pos}");
                        links += 1;
                    }
                    None => assert_eq!(hi[t], -1, "missing link {t} of sample position {pos}"),
                }
            }
        }
    }
    // the links by cell, after pruning, as the CPU assembles them
    let (cell_ids, hi, _, _) = prune(found, &index, true);
    assert_eq!(csr_like_the_gpu(&hi, npt, cell_ids.len()), csr_pattern(&hi, npt, cell_ids.len()), "links by cell");
    links
}

#[test]
fn construction_steps_match_the_cpu_stages() {
    let mut links = 0;
    let mut cases = 0;
    // a regional scatter with cell centres (ties), on both ellipsoids and schemes
    for (ellipsoid, nest) in [(Ellipsoid::Wgs84, true), (Ellipsoid::Sphere, false)] {
        let (lon, lat) = case(10, 3000, 8.0, 44.0, 1.5, 7, true);
        let p = Params { ellipsoid, nest, ..Params::new(10) };
        links += compare(&lon, &lat, &p);
        cases += 1;
    }
    // the whole sphere at a coarse level (squares across base cells, the poles, the special
    // vertices), and several npt and rings
    let (lon, lat) = case(4, 4000, -180.0, -90.0, 360.0, 11, true);
    for (npt, ring_weight, init, max) in
        [(9, None, None, None), (1, Some(1), Some(1), Some(1)), (20, None, None, Some(6)), (9, Some(5), None, None)]
    {
        let p = Params { npt, ring_weight, ring_search_init: init, ring_search_max: max, ..Params::new(4) };
        links += compare(&lon, &lat, &p);
        cases += 1;
    }
    // a sparse swath: rows that stay partial or empty, and a high threshold
    let (lon, lat) = case(9, 300, 170.0, 70.0, 20.0, 3, false);
    let p = Params { threshold: 0.5, ring_search_max: Some(3), ..Params::new(9) };
    links += compare(&lon, &lat, &p);
    println!("construct.h: {} cases; weight sums, kept cells, {links} links and the links by cell identical to the CPU stages", cases + 1);
}
