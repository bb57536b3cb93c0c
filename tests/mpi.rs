//! The collective rules of distributed calls (feature `mpi`), on every rank of MPI_COMM_WORLD. Run
//! under `mpirun -np 1..4` by scripts/test-all.sh (and as one rank by `cargo test`): a call either
//! succeeds on every rank or fails on every rank with a clear error — never a hang.
//!
//! A test harness of its own (`harness = false`): MPI is initialised once per process, and every
//! rank must run the same collective calls in the same order.

mod common;

use healpix_psf::distributed::{check_parameters, check_samples, collective, DistributedResampler, NO_CELL};
use healpix_psf::{
    Area, Bound, EmptyCells, Error, Fit, FitInfo, FitOptions, MissingData, Params, PsfResampler, Real, Stopping,
};
use mpi::traits::{Communicator, CommunicatorCollectives, Root};

fn main() {
    let universe = mpi::initialize().expect("MPI could not be initialised");
    let world = universe.world();
    let (me, size) = (world.rank() as usize, world.size() as usize);
    let mut checks = 0;
    let mut check = |ok: bool, what: &str| {
        assert!(ok, "rank {me} of {size}: {what}");
        checks += 1;
    };

    // the same parameters everywhere, and device settings that may differ per rank
    let p = Params { num_threads: me % 2, verbose: me == 0, ..Params::new(10) };
    check(check_parameters::<_, f64>(&world, &p).is_ok(), "equal parameters are accepted");

    // the last rank passes another level: an error on every rank
    let q = if me + 1 == size { Params { level: 11, ..p.clone() } } else { p.clone() };
    let r = check_parameters::<_, f64>(&world, &q);
    if size == 1 {
        check(r.is_ok(), "one rank agrees with itself");
    } else if me + 1 == size {
        check(
            matches!(&r, Err(Error::InvalidParameter { name: "level", reason, .. }) if reason.contains("rank 0 10")),
            &format!("the rank that differs names the parameter: {r:?}"),
        );
    } else {
        check(
            matches!(&r, Err(Error::OtherRank { rank, message }) if *rank == size - 1 && message.contains("level")),
            &format!("the other ranks name the rank and the parameter: {r:?}"),
        );
    }
    // an invalid value on every rank: each rank's own error
    let bad = Params { threshold: -1.0, ..p.clone() };
    check(
        matches!(check_parameters::<_, f64>(&world, &bad), Err(Error::InvalidParameter { name: "threshold", .. })),
        "an invalid threshold on every rank",
    );

    // samples: a band of longitudes per rank
    let lon: Vec<f64> = (0..100).map(|i| 10.0 * me as f64 + 0.1 * i as f64).collect();
    let lat: Vec<f64> = (0..100).map(|i| 45.0 + 0.01 * i as f64).collect();
    check(check_samples(&world, &lon, &lat, &p).is_ok(), "valid samples are accepted");
    // rank 0 has a NaN latitude
    let mut lat_nan = lat.clone();
    if me == 0 {
        lat_nan[7] = f64::NAN;
    }
    let r = check_samples(&world, &lon, &lat_nan, &p);
    check(
        match &r {
            Err(Error::InvalidCoordinate { index: 7, .. }) => me == 0,
            Err(Error::OtherRank { rank: 0, message }) => me != 0 && message.contains("sample 7"),
            _ => false,
        },
        &format!("a NaN coordinate on rank 0: {r:?}"),
    );
    // the last rank has no sample
    let none: &[f64] = &[];
    let (lo, la) = if me + 1 == size { (none, none) } else { (&lon[..], &lat[..]) };
    let r = check_samples(&world, lo, la, &p);
    check(
        match &r {
            Err(Error::EmptyInput) => me + 1 == size,
            Err(Error::OtherRank { rank, .. }) => *rank == size - 1 && me + 1 != size,
            _ => false,
        },
        &format!("a rank without samples: {r:?}"),
    );
    // several ranks fail: the lowest is named
    let r = collective(&world, if me % 2 == 1 || size == 1 { Err(Error::EmptyInput) } else { Ok(()) });
    let lowest = if size == 1 { 0 } else { 1 };
    check(
        match &r {
            Err(Error::EmptyInput) => me % 2 == 1 || size == 1,
            Err(Error::OtherRank { rank, .. }) => *rank == lowest,
            _ => false,
        },
        &format!("several failing ranks: {r:?}"),
    );
    println!("rank {me} of {size}: {checks} checks of the collective rules passed");
    tiles_cover_the_grid();

    let (small, wide) = (Data::synthetic(6000, 10, 17), Data::synthetic(40_000, 13, 17));
    for (name, how) in [("longitude bands", Split::Bands), ("round-robin", Split::RoundRobin)] {
        for (what, p) in [
            ("level 10", Params::new(10)),
            (
                "level 11, npt 16, sphere",
                Params { npt: 16, ellipsoid: healpix_psf::Ellipsoid::Sphere, ..Params::new(11) },
            ),
        ] {
            construction_equals_single_process::<f64>(&world, &small, how, &p, &format!("{name}, {what}, f64"));
        }
        let explicit = Params { area: Area::Explicit(Vec::new()), ..Params::new(10) };
        let what = format!("{name}, explicit areas, f32");
        construction_equals_single_process::<f32>(&world, &small, how, &explicit, &what);
    }
    // a region much wider than the ghost band (the ghosts are a selection), and a sample mask
    let level13 = Params::new(13);
    construction_equals_single_process::<f64>(&world, &wide, Split::Bands, &level13, "wide bands, level 13, f64");
    let masked = Params { sample_mask: Some(Vec::new()), ..Params::new(12) };
    construction_equals_single_process::<f64>(&world, &small, Split::Bands, &masked, "bands, sample mask, f64");

    restricted_output(&world, &small);

    let fits = Data::synthetic(6000, 10, 23);
    for how in [Split::Bands, Split::RoundRobin, Split::Parents] {
        fit_equals_single_process(&world, &fits, how, &Params::new(10), "");
    }
    let level11 = Params::new(11);
    construction_equals_single_process::<f64>(
        &world,
        &small,
        Split::Parents,
        &level11,
        "HEALPix parents, level 11, f64",
    );

    // a model's grid in tiles: NEMO ORCA2 (tripolar, its north fold repeating points), land left
    // out by the mask, the cells' polygon areas
    let orca = Data::orca2();
    let orca_params = Params { area: Area::Explicit(Vec::new()), sample_mask: Some(Vec::new()), ..Params::new(5) };
    let tiles = Split::Tiles(148, 180);
    construction_equals_single_process::<f64>(&world, &orca, tiles, &orca_params, "ORCA2 tiles, ocean, areas, f64");
    fit_equals_single_process(&world, &orca, tiles, &orca_params, "ORCA2 tiles, ");
    fits_refuse_bad_input(&world);

    areas_equal_single_process(&world);
}

/// `out_cell_ids` distributed: a requested list reaching beyond the samples (cells kept at a low
/// threshold that no sample links to: uncomputable), one only near the westernmost samples (the
/// other ranks of a band split hold no requested cell), the first with its uncomputable cells filled
/// from the nearest sample over every rank, and one far from every sample (an error on every rank)
/// — the single process's cells, uncomputable cells, fill samples and fits.
fn restricted_output(world: &mpi::topology::SimpleCommunicator, data: &Data) {
    use healpix_psf::geometry::Grid;
    let me = world.rank() as usize;
    let base = Params { threshold: 0.02, ..Params::new(10) };
    let full = PsfResampler::<f64>::new(&data.lon, &data.lat, &base).unwrap();
    let grid = Grid::new(10, true, base.ellipsoid).unwrap();
    let mut wide: Vec<u64> = full.cell_ids().iter().flat_map(|&c| grid.kth_neighbourhood(c, 2).unwrap()).collect();
    wide.sort_unstable();
    wide.dedup();
    let beyond: Vec<u64> = wide.iter().copied().enumerate().filter(|(i, _)| i % 5 != 2).map(|(_, c)| c).collect();
    let west = data.lon.iter().copied().fold(f64::INFINITY, f64::min) + 0.3;
    let near_west: Vec<u64> = full.cell_ids().iter().copied().filter(|&c| grid.center(c).unwrap().0 < west).collect();
    // (a threshold so low that cells two and three rings beyond the samples are kept)
    // and the first filled from the nearest sample (fill_missing_out_cells: over every rank)
    let cases = [
        ("beyond the samples", beyond.clone(), 1e-5, false),
        ("near the west end only", near_west, 0.02, false),
        ("beyond the samples, filled", beyond, 1e-5, true),
    ];
    for (what, cells, threshold, fill) in cases {
        let p = Params { out_cell_ids: Some(cells), threshold, fill_missing_out_cells: fill, ..base.clone() };
        let single = PsfResampler::<f64>::new(&data.lon, &data.lat, &p).unwrap();
        let unlinked = single.cell_sample_counts().iter().filter(|&&c| c == 0).count();
        if what.contains("beyond") {
            // cells no sample links to (their owner is a keep-stage rank: `claim_unlinked`)
            assert!(unlinked > 0 && !single.uncomputable_cells().is_empty(), "{what}: {unlinked} unlinked cells");
        }
        if me == 0 {
            println!(
                "{what}: {} cells, {} uncomputable, {unlinked} unlinked",
                single.k(),
                single.uncomputable_cells().len()
            );
        }
        for (name, how) in [("bands", Split::Bands), ("round-robin", Split::RoundRobin)] {
            let what = format!("restricted output {what}, {name}, f64");
            construction_equals_single_process::<f64>(world, data, how, &p, &what);
        }
        fit_equals_single_process(world, data, Split::Bands, &p, &format!("restricted output {what}, "));
        if fill {
            assert_eq!(single.fill_samples().len(), single.uncomputable_cells().len());
            fit_equals_single_process(world, data, Split::RoundRobin, &p, &format!("restricted output {what}, "));
        }
    }
    // requested cells far from every sample: the single process's error, on every rank
    let far = Params { out_cell_ids: Some(vec![0, 1, 2]), ..base.clone() };
    let parts = split(&data.lon, &data.lat, world.size() as usize, Split::Bands);
    let pick = |v: &[f64]| parts[me].iter().map(|&i| v[i]).collect::<Vec<f64>>();
    let r = DistributedResampler::<f64>::new(world, &pick(&data.lon), &pick(&data.lat), &far);
    assert!(
        matches!(&r, Err(Error::InvalidParameter { name: "out_cell_ids", .. }) | Err(Error::OtherRank { .. })),
        "requested cells far from the samples: {:?}",
        r.err()
    );
    println!("rank {me}: restricted output checked");
}

/// `distributed::tile` splits a grid into disjoint blocks covering it, as square as the divisors
/// allow, and refuses what it cannot split.
fn tiles_cover_the_grid() {
    use healpix_psf::distributed::tile;
    for (shape, size) in [(vec![7, 9], 4), (vec![10], 3), (vec![5, 7], 7), (vec![2, 3, 4], 6), (vec![1, 13], 5)] {
        let n: usize = shape.iter().product();
        let mut seen = vec![0u8; n];
        for r in 0..size {
            let t = tile(&shape, r, size).unwrap();
            assert!(!t.is_empty() && t.windows(2).all(|w| w[0] < w[1]), "{shape:?} on {size}: tile {r}");
            t.iter().for_each(|&i| seen[i] += 1);
        }
        assert!(seen.iter().all(|&c| c == 1), "{shape:?} on {size}: every point in one tile");
    }
    // 4 ranks on a 6 × 8 grid: 2 × 2 blocks of 3 × 4; a prime count on a wide grid: columns
    assert_eq!(tile(&[6, 8], 1, 4).unwrap(), vec![4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23]);
    assert_eq!(tile(&[4, 30], 2, 3).unwrap().len(), 40);
    assert!(tile(&[3], 0, 4).is_err(), "more ranks than points");
    assert!(tile(&[5, 5], 2, 2).is_err(), "a rank outside the communicator");
    assert!(tile(&[], 0, 1).is_err(), "no points");
}

/// The areas estimated over the union of the ranks' samples (the spacing estimate, the reference's
/// ring areas, `Area::Auto`'s choice) equal the single process's bit for bit — on a grid of
/// latitude rings in tiles, bands and round-robin, on the ORCA2 grid's ocean, on scattered samples
/// with isolated ones (the median fill), and on a few samples over the globe (buckets at level 0)
/// — and so does the rest of the operator.
fn areas_equal_single_process(world: &mpi::topology::SimpleCommunicator) {
    let grid = Data::grid(60, 80, 0.1);
    let orca = Data::orca2();
    let mut isolated = Data::synthetic(5000, 10, 31);
    for (x, y) in [(30.0, 10.0), (-40.0, -20.0), (100.0, 60.0)] {
        isolated.lon.push(x);
        isolated.lat.push(y);
        isolated.area.push(1.0);
        isolated.used.push(true);
    }
    let sparse = Data::sparse_globe(60);
    let sparse_l1 = Data::sparse_globe(150);
    // rings across the equator, the equator's samples at latitude 0 and −0 alternately
    let mut equator = Data::grid(60, 80, 0.1);
    for (k, y) in equator.lat.iter_mut().enumerate() {
        let j = k / 80;
        *y = if j == 30 && k % 2 == 1 { -0.0 } else { (j as f64 - 30.0) * 0.1 };
    }
    let p = |area: Area, level: u8| Params { area, ..Params::new(level) };
    let ocean = Params { sample_mask: Some(Vec::new()), ..p(Area::Auto, 5) };
    // (what, samples, decomposition, parameters, whether areas are estimated: not all equal)
    let cases: [(&str, &Data, Split, Params, bool); 13] = [
        ("ring grid in tiles, Area::Auto", &grid, Split::Tiles(60, 80), p(Area::Auto, 10), true),
        ("ring grid in bands, Area::Spacing", &grid, Split::Bands, p(Area::Spacing, 10), true),
        ("ring grid round-robin, Area::Auto", &grid, Split::RoundRobin, p(Area::Auto, 10), true),
        ("ring grid in tiles, Area::ReferenceAuto", &grid, Split::Tiles(60, 80), p(Area::ReferenceAuto, 10), true),
        ("ring grid round-robin, Area::ReferenceAuto", &grid, Split::RoundRobin, p(Area::ReferenceAuto, 10), true),
        (
            "rings at ±0 latitude in tiles, Area::ReferenceAuto",
            &equator,
            Split::Tiles(60, 80),
            p(Area::ReferenceAuto, 10),
            true,
        ),
        ("rings at ±0 latitude round-robin, Area::Auto", &equator, Split::RoundRobin, p(Area::Auto, 10), true),
        ("ORCA2 ocean in tiles, Area::Auto", &orca, Split::Tiles(148, 180), ocean, true),
        ("scattered with isolated samples, Area::Spacing", &isolated, Split::RoundRobin, p(Area::Spacing, 10), true),
        ("scattered with isolated samples in bands", &isolated, Split::Bands, p(Area::Spacing, 10), true),
        ("scattered, Area::Auto (not rings: uniform)", &isolated, Split::Bands, p(Area::Auto, 10), false),
        ("60 samples over the globe (level-0 buckets)", &sparse, Split::RoundRobin, p(Area::Spacing, 2), true),
        ("150 samples over the globe (level-1 buckets)", &sparse_l1, Split::Bands, p(Area::Spacing, 3), true),
    ];
    let me = world.rank() as usize;
    for (what, data, how, p, estimated) in cases {
        let want = construction_equals_single_process::<f64>(world, data, how, &p, what);
        // the estimate was made (or not): the areas are not all equal
        assert_eq!(want.iter().any(|&a| a != want[0]), estimated, "{what}: estimated areas");
        println!("rank {me}: {what}: the areas equal the single process's");
    }
}

#[derive(Clone, Copy)]
enum Split {
    /// contiguous bands of longitude, one per rank
    Bands,
    /// sample i to rank i mod size: every sample's neighbours on other ranks
    RoundRobin,
    /// by HEALPix parent cell (level 7, nested), whole parents to each rank round-robin
    Parents,
    /// blocks of a grid of ny × nx points, as a model decomposes it (`distributed::tile`)
    Tiles(usize, usize),
}

/// The samples of a test: coordinates, areas (used where the parameters ask for explicit areas)
/// and the samples used (where they ask for a mask).
struct Data {
    lon: Vec<f64>,
    lat: Vec<f64>,
    area: Vec<f64>,
    used: Vec<bool>,
}

impl Data {
    /// A regional sample set at ~1.5 samples per cell of `level`; areas 1–2.5, every eleventh
    /// sample left out by a mask.
    fn synthetic(n: usize, level: u8, seed: u64) -> Data {
        let (lon, lat) = common::synth::regional(n, level, 1.5, seed);
        let area = (0..n).map(|i| 1.0 + (i % 7) as f64 * 0.25).collect();
        Data { lon, lat, area, used: (0..n).map(|i| i % 11 != 5).collect() }
    }

    /// A regular grid of ny latitude rings of nx points, `step` degrees apart (from 5°E 40°N).
    fn grid(ny: usize, nx: usize, step: f64) -> Data {
        let (lon, lat): (Vec<f64>, Vec<f64>) =
            (0..ny * nx).map(|k| (5.0 + step * (k % nx) as f64, 40.0 + step * (k / nx) as f64)).unzip();
        Data { area: vec![1.0; lon.len()], used: vec![true; lon.len()], lon, lat }
    }

    /// `n` samples scattered over the globe (a golden-angle spiral).
    fn sparse_globe(n: usize) -> Data {
        let (lon, lat): (Vec<f64>, Vec<f64>) = (0..n)
            .map(|k| {
                let z = 1.0 - 2.0 * (k as f64 + 0.5) / n as f64;
                ((137.508 * k as f64) % 360.0, z.asin().to_degrees())
            })
            .unzip();
        Data { area: vec![1.0; n], used: vec![true; n], lon, lat }
    }

    /// The ORCA2 fixture: the ocean used, the polygon areas (sr, shared at repeated positions).
    fn orca2() -> Data {
        let o = common::orca::Orca::read(&common::orca::fixture_dir());
        let used = o.sst.iter().map(|v| v.is_finite()).collect();
        Data { lon: o.lon, lat: o.lat, area: o.exact, used }
    }

    /// The parameters `p` for the samples `idx`: `Area::Explicit` and `sample_mask` in `p` (any
    /// content) become those of the samples.
    fn params(&self, p: &Params, idx: &[usize]) -> Params {
        Params {
            area: match p.area {
                Area::Explicit(_) => Area::Explicit(idx.iter().map(|&i| self.area[i]).collect()),
                ref a => a.clone(),
            },
            sample_mask: p.sample_mask.as_ref().map(|_| idx.iter().map(|&i| self.used[i]).collect()),
            ..p.clone()
        }
    }

    /// Whether sample i is used under `p`.
    fn uses(&self, p: &Params, i: usize) -> bool {
        p.sample_mask.is_none() || self.used[i]
    }
}

/// The samples of each rank, as indices into the whole set.
fn split(lon: &[f64], lat: &[f64], size: usize, how: Split) -> Vec<Vec<usize>> {
    let mut by_rank = vec![Vec::new(); size];
    match how {
        Split::RoundRobin => (0..lon.len()).for_each(|i| by_rank[i % size].push(i)),
        Split::Tiles(ny, nx) => {
            assert_eq!(ny * nx, lon.len());
            by_rank = (0..size).map(|r| healpix_psf::distributed::tile(&[ny, nx], r, size).unwrap()).collect();
        }
        Split::Parents => {
            let grid = healpix_psf::geometry::Grid::new(7, true, healpix_psf::Ellipsoid::Sphere).unwrap();
            (0..lon.len()).for_each(|i| by_rank[grid.cell(lon[i], lat[i]).unwrap() as usize % size].push(i))
        }
        Split::Bands => {
            let mut idx: Vec<usize> = (0..lon.len()).collect();
            idx.sort_by(|&a, &b| lon[a].total_cmp(&lon[b]));
            for (k, &i) in idx.iter().enumerate() {
                by_rank[k * size / lon.len()].push(i);
            }
            by_rank.iter_mut().for_each(|v| v.sort_unstable());
        }
    }
    by_rank
}

/// Builds distributed and, on every rank, the single-process operator of all samples in the global
/// order (rank 0's, then rank 1's, …); asserts that every kept cell has exactly one owner and that
/// this rank's links, MT, distances, and its cells' Dx and rows of M are the single-process ones,
/// bit for bit.
fn construction_equals_single_process<F: Real>(
    world: &mpi::topology::SimpleCommunicator,
    data: &Data,
    how: Split,
    p: &Params,
    what: &str,
) -> Vec<f64> {
    let (me, size) = (world.rank() as usize, world.size() as usize);
    let (lon, lat) = (&data.lon, &data.lat);
    let parts = split(lon, lat, size, how);
    let global: Vec<usize> = parts.concat();
    let pick = |v: &[f64], idx: &[usize]| idx.iter().map(|&i| v[i]).collect::<Vec<f64>>();
    let mine = &parts[me];
    let d = DistributedResampler::<F>::new(world, &pick(lon, mine), &pick(lat, mine), &data.params(p, mine))
        .unwrap_or_else(|e| panic!("{what}: the distributed build failed on rank {me}: {e}"));
    // the single-process operator of the used samples, in the global order
    let used: Vec<usize> = global.iter().copied().filter(|&i| data.uses(p, i)).collect();
    let single_params = Params { sample_mask: None, ..data.params(p, &used) };
    let single = PsfResampler::<F>::new(&pick(lon, &used), &pick(lat, &used), &single_params).unwrap();
    assert_eq!(d.used_samples().len(), mine.iter().filter(|&&i| data.uses(p, i)).count());
    // the areas (given or estimated), bit for bit: this rank's used samples follow the lower ranks'
    let offset: usize = parts[..me].iter().map(|r| r.iter().filter(|&&i| data.uses(p, i)).count()).sum();
    let want = single.area();
    for (j, a) in d.area().iter().enumerate() {
        assert_eq!(a.to_f64().to_bits(), want[offset + j].to_f64().to_bits(), "{what}: the area of used sample {j}");
    }

    // every kept cell has exactly one owner
    let mut owned_count = vec![0u64; size];
    world.all_gather_into(&(d.cell_ids().len() as u64), &mut owned_count[..]);
    assert_eq!(owned_count.iter().sum::<u64>() as usize, single.k(), "{what}: owned cells over the ranks");
    let ids = single.cell_ids();
    let index: Vec<usize> = d
        .cell_ids()
        .iter()
        .map(|c| ids.binary_search(c).unwrap_or_else(|_| panic!("{what}: rank {me} owns cell {c}, not kept")))
        .collect();
    let mut seen = vec![0u8; single.k()];
    for &c in &index {
        seen[c] = 1;
    }
    let mut all_seen = vec![0u8; single.k()];
    world.all_reduce_into(&seen[..], &mut all_seen[..], mpi::collective::SystemOperation::sum());
    assert!(all_seen.iter().all(|&x| x == 1), "{what}: a cell owned by no rank or by two");
    // restricted output: the uncomputable cells among this rank's, and their number over the ranks
    let unc: Vec<u64> = d.uncomputable_cells().iter().map(|&c| d.cell_ids()[c as usize]).collect();
    let want_unc: Vec<u64> = single
        .uncomputable_cells()
        .iter()
        .map(|&c| ids[c as usize])
        .filter(|id| d.cell_ids().binary_search(id).is_ok())
        .collect();
    assert_eq!(unc, want_unc, "{what}: the uncomputable cells");
    let mut unc_total = 0u64;
    world.all_reduce_into(&(unc.len() as u64), &mut unc_total, mpi::collective::SystemOperation::sum());
    assert_eq!(unc_total as usize, single.uncomputable_cells().len(), "{what}: uncomputable cells over the ranks");
    // with fill_missing_out_cells: the nearest sample of each, over every rank
    let want_fill: Vec<u64> = (single.uncomputable_cells().iter().zip(single.fill_samples()))
        .filter(|(&c, _)| d.cell_ids().binary_search(&ids[c as usize]).is_ok())
        .map(|(_, &s)| s as u64)
        .collect();
    assert_eq!(d.fill_samples(), &want_fill[..], "{what}: the samples filling the uncomputable cells");

    // this rank's samples' links, MT and distances
    let (npt, hi, d_m) = (single.npt(), single.hi(), single.d_m());
    let mt: std::collections::HashMap<(u64, u64), u64> = {
        let t = single.mt_triplets();
        t.rows
            .iter()
            .zip(&t.cols)
            .zip(&t.vals)
            .map(|((&c, &s), v)| ((s, ids[c as usize]), v.to_f64().to_bits()))
            .collect()
    };
    let (cells, vals, dist) = d.links();
    for (j, g) in d.global_samples().into_iter().enumerate() {
        for t in 0..npt {
            let (h, c) = (hi[g as usize * npt + t], cells[j * npt + t]);
            assert_eq!(if h < 0 { NO_CELL } else { ids[h as usize] }, c, "{what}: sample {g} link {t}");
            assert_eq!(d_m[g as usize * npt + t].to_f64().to_bits(), dist[j * npt + t].to_f64().to_bits());
            if c != NO_CELL {
                assert_eq!(mt[&(g, c)], vals[j * npt + t].to_f64().to_bits(), "{what}: MT of sample {g}, cell {c}");
            }
        }
    }
    // this rank's cells: Dx and the rows of M
    let (ptr, smp, m) = d.m_rows();
    let (links, order) = (single.cell_links(), single.sample_order());
    for (r, &c) in index.iter().enumerate() {
        assert_eq!(single.cell_weight()[c].to_f64().to_bits(), d.cell_weight()[r].to_f64().to_bits(), "{what}: Dx");
        let want: Vec<(u64, u64)> = (links.ptr()[c]..links.ptr()[c + 1])
            .map(|q| (order[links.sample()[q] as usize] as u64, links.m_values()[q].to_f64().to_bits()))
            .collect();
        // in the single-process operator's order
        let got: Vec<(u64, u64)> = (ptr[r]..ptr[r + 1]).map(|q| (smp[q], m[q].to_f64().to_bits())).collect();
        assert_eq!(got, want, "{what}: the row of M of cell {}", ids[c]);
    }
    println!(
        "rank {me} of {size}: {what}: {} of {} cells owned, {} samples + {} ghosts — equal to the single-process operator",
        d.cell_ids().len(),
        single.k(),
        mine.len(),
        d.ghost_samples()
    );
    want.iter().map(|a| a.to_f64()).collect()
}

/// The distributed fit against the single-process fit of all samples: each rank's cells to 1e-10
/// of the largest value, NaN in the same cells, the same iteration counts — for damped fits to a
/// tight tolerance (both stopping rules, per-row missing data and the reference's zero-filling) and
/// a fixed number of undamped iterations.
fn fit_equals_single_process(
    world: &mpi::topology::SimpleCommunicator,
    data: &Data,
    how: Split,
    p: &Params,
    name: &str,
) {
    let (me, size) = (world.rank() as usize, world.size() as usize);
    let (lon, lat) = (&data.lon, &data.lat);
    let parts = split(lon, lat, size, how);
    let global: Vec<usize> = parts.concat();
    // three rows: smooth; missing in a band; missing every seventh sample
    let b = 3;
    let value = |row: usize, i: usize| -> f64 {
        let (x, y) = (lon[i], lat[i]);
        let missing = (row == 1 && (x - 8.0).abs() < 0.1) || (row == 2 && i % 7 == 3);
        if missing {
            f64::NAN
        } else {
            10.0 + (x * (1.0 + row as f64)).sin() + (3.0 * y).cos()
        }
    };
    let rows_of = |idx: &[usize]| -> Vec<f64> { (0..b).flat_map(|r| idx.iter().map(move |&i| value(r, i))).collect() };
    let pick = |v: &[f64], idx: &[usize]| idx.iter().map(|&i| v[i]).collect::<Vec<f64>>();
    let mine = &parts[me];
    let d = DistributedResampler::<f64>::new(world, &pick(lon, mine), &pick(lat, mine), &data.params(p, mine)).unwrap();
    let single = PsfResampler::<f64>::new(&pick(lon, &global), &pick(lat, &global), &data.params(p, &global)).unwrap();
    let ids = single.cell_ids();
    let index: Vec<usize> = d.cell_ids().iter().map(|c| ids.binary_search(c).unwrap()).collect();
    let (k, k_all) = (index.len(), single.k());
    let base = FitOptions::<f64> { lam: 1e-2, tol: 1e-10, max_iter: 400, return_info: true, ..FitOptions::default() };
    // an initial update on the cells: this rank's cells, and all of them for the single process
    let x0_of = |cells: &[u64]| -> Vec<f64> {
        (0..b).flat_map(|r| cells.iter().map(move |&c| 0.05 * ((c % 97) as f64 + r as f64).sin())).collect()
    };
    // bounded: each active-set pass's CG to 1e-6 (the passes, the held cells and their order are what
    // these cases check; to 1e-10 they ran 320–900 iterations, the most of this test's time)
    let bounded = FitOptions { lower: Bound::Value(9.2), upper: Bound::Input, tol: 1e-6, ..base.clone() };
    let cases = [
        ("damped, pooled", base.clone()),
        ("damped, per row", FitOptions { stopping: Stopping::PerRow, ..base.clone() }),
        ("damped, zero-filled", FitOptions { missing: MissingData::ZeroFill, ..base.clone() }),
        ("20 undamped iterations", FitOptions { lam: 0.0, tol: 1e-300, max_iter: 20, ..base.clone() }),
        ("bounded, pooled", bounded.clone()),
        ("bounded, per row", FitOptions { stopping: Stopping::PerRow, ..bounded.clone() }),
        (
            "conservative, zero-filled",
            FitOptions { conservative: true, missing: MissingData::ZeroFill, ..base.clone() },
        ),
        ("conservative, per-row missing", FitOptions { conservative: true, ..base.clone() }),
        ("bounded and conservative", FitOptions { conservative: true, ..bounded.clone() }),
        (
            "from x0, empty cells missing",
            FitOptions { x0: Some(Vec::new()), empty_cells: EmptyCells::Missing, ..base.clone() },
        ),
    ];
    let own_start: usize = parts[..me].iter().map(Vec::len).sum();
    for (what, mut o) in cases {
        let what = format!("{name}{what}");
        let mut o_single = o.clone();
        if o.x0.is_some() {
            (o.x0, o_single.x0) = (Some(x0_of(d.cell_ids())), Some(x0_of(ids)));
        }
        let (got, back) =
            d.fit_resample(world, &rows_of(mine), &o).unwrap_or_else(|e| panic!("{what}: rank {me}: {e}"));
        let again = d.fit(world, &rows_of(mine), &o).unwrap();
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<u64>>();
        assert_eq!(bits(&got.hval), bits(&again.hval), "{what}: a second run differs");
        let (want, want_back) = single_fit_from_rank0(world, &single, &rows_of(&global), &o_single);
        let largest = want.hval.iter().filter(|v| !v.is_nan()).fold(0.0f64, |a, v| a.max(v.abs()));
        let mut worst = 0.0f64;
        for r in 0..b {
            for (j, &c) in index.iter().enumerate() {
                let (g, w) = (got.hval[r * k + j], want.hval[r * k_all + c]);
                assert_eq!(g.is_nan(), w.is_nan(), "{what}: row {r}, cell {}: {g} against {w}", ids[c]);
                if !w.is_nan() {
                    worst = worst.max((g - w).abs() / largest);
                }
            }
        }
        let (gi, wi) = (got.info.unwrap(), want.info.unwrap());
        assert!(worst <= 1e-10, "{what}: rank {me}: the fitted field differs by {worst:e}");
        assert_eq!(gi.row_iterations, wi.row_iterations, "{what}: iterations");
        assert_eq!(gi.converged, wi.converged, "{what}: converged");
        assert_eq!(gi.empty_cells, wi.empty_cells, "{what}: cells without data");
        assert_eq!(
            (&gi.n_clipped_low, &gi.n_clipped_high),
            (&wi.n_clipped_low, &wi.n_clipped_high),
            "{what}: held cells"
        );
        assert_eq!(gi.outer_passes, wi.outer_passes, "{what}: active-set passes");
        for r in 0..b {
            let close = |a: f64, w: f64| (a.is_nan() && w.is_nan()) || (a - w).abs() <= 1e-10 * w.abs().max(1e-300);
            assert!(
                close(gi.residual_rms[r], wi.residual_rms[r]),
                "{what}: row {r}: RMS {} against {}",
                gi.residual_rms[r],
                wi.residual_rms[r]
            );
            assert!(close(gi.residual_max[r], wi.residual_max[r]), "{what}: row {r}: max residual");
        }
        // the fitted field at this rank's samples, and on rank 0 the whole field
        let n = mine.len();
        for r in 0..b {
            for j in 0..n {
                let (g, w) = (back[r * n + j], want_back[r * global.len() + own_start + j]);
                assert!(
                    (g.is_nan() && w.is_nan()) || (g - w).abs() <= 1e-10 * largest,
                    "{what}: resampled row {r}, sample {j}: {g} against {w}"
                );
            }
        }
        let gathered = d.gather(world, 0, &got.hval).unwrap();
        assert_eq!(gathered.is_some(), me == 0);
        if let Some((all_ids, all)) = gathered {
            assert_eq!(all_ids, ids, "{what}: the gathered ids");
            let worst =
                all.iter().zip(&want.hval).filter(|(_, w)| !w.is_nan()).fold(0.0f64, |a, (g, w)| a.max((g - w).abs()));
            assert!(worst <= 1e-10 * largest, "{what}: the gathered field differs by {worst:e}");
        }
        println!(
            "rank {me} of {size}: fit ({what}): {k} of {k_all} cells within {worst:.1e} of the single process, {:?} \
             iterations, {} active-set passes, held low {:?}, high {:?}, empty {:?}",
            gi.row_iterations, gi.outer_passes, gi.n_clipped_low, gi.n_clipped_high, gi.empty_cells
        );
    }
    // x_ref (the Gaussian average of the samples) on this rank's cells: the single process's, bit
    // for bit (each cell's row of M and its order are the single process's)
    for missing in [MissingData::PerRow, MissingData::ZeroFill] {
        let got = d.x_ref(world, &rows_of(mine), missing).unwrap();
        let want = single.x_ref(&rows_of(&global), missing).unwrap();
        for r in 0..b {
            for (j, &c) in index.iter().enumerate() {
                let (g, w) = (got[r * k + j], want[r * k_all + c]);
                assert_eq!(
                    g.to_bits(),
                    w.to_bits(),
                    "{name}x_ref ({missing:?}), row {r}, cell {}: {g} against {w}",
                    ids[c]
                );
            }
        }
    }
    // rows differing between ranks: an error on every rank
    if size > 1 {
        let rows = if me == 0 { rows_of(mine) } else { rows_of(mine)[..mine.len()].to_vec() };
        let r = d.x_ref(world, &rows, MissingData::PerRow);
        assert!(matches!(&r, Err(Error::InvalidParameter { name: "val", .. })), "{name}x_ref: {:?}", r.err());
    }
}

/// The single process's `fit_resample` of all samples, run on rank 0 only and sent to every rank
/// (its field, its values at the samples and the info the tests compare). Run on every rank, it cost
/// as many single-process fits as there are ranks: on CI's two cores this test took 87 s on four
/// ranks, 61 s with the fit on rank 0 only. (Rank 0 fits with all threads, the others compare with
/// fits of one thread: the same bits, as with any thread count.)
fn single_fit_from_rank0(
    world: &mpi::topology::SimpleCommunicator,
    single: &PsfResampler<f64>,
    values: &[f64],
    o: &FitOptions<f64>,
) -> (Fit<f64>, Vec<f64>) {
    let rows = values.len() / single.n();
    let (k_rows, n_rows) = (rows * single.k(), values.len());
    // the field, the values at the samples, seven numbers per row, the iterations and passes
    let mut packed = vec![0.0f64; k_rows + n_rows + 7 * rows + 2];
    if world.rank() == 0 {
        let (fit, back) = single.fit_resample(values, o).unwrap();
        let info = fit.info.expect("return_info is set");
        let per_row = [
            info.row_iterations.iter().map(|&v| v as f64).collect::<Vec<f64>>(),
            info.converged.iter().map(|&v| f64::from(u8::from(v))).collect(),
            info.empty_cells.iter().map(|&v| v as f64).collect(),
            info.n_clipped_low.iter().map(|&v| v as f64).collect(),
            info.n_clipped_high.iter().map(|&v| v as f64).collect(),
            info.residual_rms.clone(),
            info.residual_max.clone(),
        ];
        let all: Vec<f64> =
            [fit.hval, back, per_row.concat(), vec![info.iterations as f64, info.outer_passes as f64]].concat();
        assert_eq!(all.len(), packed.len(), "the packed single-process fit");
        packed = all;
    }
    world.process_at_rank(0).broadcast_into(&mut packed[..]);
    let (hval, rest) = packed.split_at(k_rows);
    let (back, rest) = rest.split_at(n_rows);
    let row = |i: usize| &rest[i * rows..(i + 1) * rows];
    let counts = |i: usize| row(i).iter().map(|&v| v as usize).collect::<Vec<usize>>();
    let info = FitInfo {
        iterations: rest[7 * rows] as usize,
        row_iterations: counts(0),
        converged: row(1).iter().map(|&v| v == 1.0).collect(),
        empty_cells: counts(2),
        n_clipped_low: counts(3),
        n_clipped_high: counts(4),
        residual_rms: row(5).to_vec(),
        residual_max: row(6).to_vec(),
        outer_passes: rest[7 * rows + 1] as usize,
        ..FitInfo::default()
    };
    (Fit { hval: hval.to_vec(), rows, info: Some(info) }, back.to_vec())
}

/// Bad input to a distributed fit on one rank: a clear error on every rank, never a hang; and a
/// rank that owns no cell (its samples lie in rank 0's cells) takes part with no values.
fn fits_refuse_bad_input(world: &mpi::topology::SimpleCommunicator) {
    let (me, size) = (world.rank() as usize, world.size() as usize);
    let last = me + 1 == size;
    let p = Params::new(10);
    let (lon, lat) = common::synth::regional(2000, p.level, 1.0, 5);
    let parts = split(&lon, &lat, size, Split::Bands);
    let pick = |v: &[f64], idx: &[usize]| idx.iter().map(|&i| v[i]).collect::<Vec<f64>>();
    let (mlon, mlat) = (pick(&lon, &parts[me]), pick(&lat, &parts[me]));
    let d = DistributedResampler::<f64>::new(world, &mlon, &mlat, &p).unwrap();
    let val: Vec<f64> = mlat.iter().map(|y| 2.0 * y).collect();
    let o = FitOptions::<f64> { lam: 1e-2, ..FitOptions::default() };
    // (what, this rank's values, its options, the parameter the failing rank names)
    let mut inf = val.clone();
    inf[3] = f64::INFINITY;
    let cases: [(&str, Vec<f64>, FitOptions<f64>, &str); 4] = [
        ("another damping", val.clone(), FitOptions { lam: 0.5, ..o.clone() }, "lam"),
        ("another row count", [&val[..], &val[..]].concat(), o.clone(), "rows of values"),
        ("x0 on one rank", val.clone(), FitOptions { x0: Some(vec![0.0; d.cell_ids().len()]), ..o.clone() }, "x0"),
        ("an infinite value", inf, o.clone(), "val"),
    ];
    for (what, v, bad, name) in cases {
        let (v, opts) = if last { (v, bad) } else { (val.clone(), o.clone()) };
        let r = d.fit(world, &v, &opts);
        let ok = match &r {
            _ if size == 1 && name != "val" => r.is_ok(),
            Err(Error::InvalidParameter { name: n, .. }) => last && *n == name,
            Err(Error::InvalidValue { what: w, index: 3, .. }) => last && *w == name,
            Err(Error::OtherRank { rank, .. }) => !last && *rank == size - 1,
            _ => false,
        };
        assert!(ok, "rank {me} of {size}: {what}: {:?}", r.as_ref().err());
    }
    println!("rank {me} of {size}: bad input to a fit on the last rank fails on every rank");

    // the last rank's samples copy some of rank 0's: every cell they touch is rank 0's
    let zero = parts[0].clone();
    let mine: Vec<usize> = if last && size > 1 { zero.iter().copied().step_by(3).collect() } else { parts[me].clone() };
    let global: Vec<usize> = (0..size)
        .flat_map(
            |r| if r + 1 == size && size > 1 { zero.iter().copied().step_by(3).collect() } else { parts[r].clone() },
        )
        .collect();
    let d = DistributedResampler::<f64>::new(world, &pick(&lon, &mine), &pick(&lat, &mine), &p).unwrap();
    if last && size > 1 {
        assert!(d.cell_ids().is_empty(), "rank {me}: owns {} cells", d.cell_ids().len());
    }
    let value = |i: usize| 5.0 + lon[i].sin() * lat[i].cos();
    let (fit, back) = d.fit_resample(world, &mine.iter().map(|&i| value(i)).collect::<Vec<f64>>(), &o).unwrap();
    assert_eq!((fit.hval.len(), back.len()), (d.cell_ids().len(), mine.len()));
    let single = PsfResampler::<f64>::new(&pick(&lon, &global), &pick(&lat, &global), &p).unwrap();
    let want = single.fit(&global.iter().map(|&i| value(i)).collect::<Vec<f64>>(), &o).unwrap();
    if let Some((ids, all)) = d.gather(world, 0, &fit.hval).unwrap() {
        assert_eq!(ids, single.cell_ids());
        let worst = all.iter().zip(&want.hval).fold(0.0f64, |a, (g, w)| a.max((g - w).abs()));
        assert!(worst <= 1e-10 * 6.0, "a rank without cells: the field differs by {worst:e}");
    }
    println!(
        "rank {me} of {size}: a rank owning no cell ({} samples) takes part in fit, resample and gather",
        mine.len()
    );
}
