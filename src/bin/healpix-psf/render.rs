//! PNG maps of a regridded field: the HEALPix cells, optionally beside the input samples on the same
//! view and colour scale, with a title, panel labels, coastlines, a graticule and a colour bar.
//!
//! * Cells keep their true shapes: every pixel shows the value of the cell its centre falls in.
//! * The input is drawn as filled areas: every pixel shows its nearest sample when that sample is
//!   within about the local sample spacing, so a regular grid has no gaps between its rows while a
//!   real gap (land, the edge of a swath) stays missing. Grey is missing, white is off the globe.
//! * The view fits the data ([`Projection::Auto`]): a Mollweide map of the globe for global data, a
//!   longitude/latitude box around regional data (across the antimeridian if need be), an
//!   orthographic view centred on the pole for polar data.
//! * The colours span the 1st–99th percentiles of the drawn values; arrows at the ends of the colour
//!   bar say that some values lie beyond them (they are clipped to the end colours).

use crate::coast;
use crate::CliError;
use healpix_psf::geometry::{chord2, unit_vector, Ellipsoid, Grid};
use rayon::prelude::*;
use std::f64::consts::{PI, SQRT_2};
use std::ops::Range;

/// The map projection of the PNG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Projection {
    /// Fitted to the data: Mollweide for global data, a longitude/latitude box around regional
    /// data, an orthographic view of the pole for polar data.
    Auto,
    /// Longitude/latitude (plate carrée) of the whole globe, 2:1.
    Lonlat,
    /// Mollweide (equal-area) of the whole globe, a 2:1 ellipse.
    Mollweide,
    /// Orthographic: the hemisphere centred on the data, as seen from space.
    Orthographic,
}

/// One row of the input: N samples, NaN = missing (a sample whose longitude or latitude is NaN is
/// skipped).
pub struct MapPoints<'a> {
    pub lon: &'a [f64],
    pub lat: &'a [f64],
    pub values: &'a [f64],
}

/// What to draw, and where.
pub struct MapRequest<'a> {
    /// The file to write.
    pub path: &'a std::path::Path,
    /// The variable's name.
    pub var: &'a str,
    /// Its CF units (may be empty).
    pub units: &'a str,
    /// Which row is drawn, e.g. "time = 3 of 12"; empty when the data has one row.
    pub row_label: &'a str,
    /// The cells' grid.
    pub grid: &'a Grid,
    /// Cell ids, ascending in `grid`'s scheme.
    pub cell_ids: &'a [u64],
    /// One value per cell id, NaN = missing.
    pub cell_values: &'a [f64],
    /// Some: the input, drawn beside the result on the same view and colour scale.
    pub input: Option<MapPoints<'a>>,
    /// The view.
    pub projection: Projection,
    /// Pixel width of each panel.
    pub width: usize,
}

/// Draws the map the request describes and writes it as a PNG.
pub fn draw(req: &MapRequest<'_>) -> Result<(), CliError> {
    if req.cell_ids.len() != req.cell_values.len() {
        return Err(CliError(format!(
            "{}: {} cell ids but {} values to draw",
            req.path.display(),
            req.cell_ids.len(),
            req.cell_values.len()
        )));
    }
    if let Some(p) = &req.input {
        if p.lon.len() != p.values.len() || p.lat.len() != p.values.len() {
            return Err(CliError(format!(
                "{}: the input has {} longitudes, {} latitudes and {} values",
                req.path.display(),
                p.lon.len(),
                p.lat.len(),
                p.values.len()
            )));
        }
    }
    let (lon, lat) = data_positions(req);
    let view = choose_view(req.projection, &lon, &lat);
    let pw = req.width.max(200);
    let ph = ((pw as f64 * view.aspect()).round() as usize).clamp(100, 3 * pw);
    let scale = ColourScale::new(req);
    let layout = Layout::new(req, &view, pw, ph);
    let mut canvas = Canvas::new(layout.w, layout.h);
    let positions = view.pixel_positions(pw, ph);

    draw_title(&mut canvas, req);
    let mut x0 = layout.margin_left;
    if let Some(points) = &req.input {
        let n_valid = (0..points.values.len())
            .filter(|&i| points.values[i].is_finite() && points.lon[i].is_finite() && points.lat[i].is_finite())
            .count();
        let fill = SampleIndex::new(points).map(|index| index.fill(&positions, pw));
        let panel = Rect { x: x0, y: layout.top, w: pw, h: ph };
        paint(&mut canvas, panel, &positions, fill.as_deref(), &scale);
        decorate(&mut canvas, panel, &view, &format!("input: {n_valid} valid points"));
        x0 += pw + layout.gap;
    }
    let cells = fill_cells(req, &positions);
    let panel = Rect { x: x0, y: layout.top, w: pw, h: ph };
    paint(&mut canvas, panel, &positions, Some(&cells), &scale);
    decorate(&mut canvas, panel, &view, &cells_label(req));
    draw_colour_bar(&mut canvas, &layout, &scale, &bar_label(req.var, req.units));
    write_png(req.path, &canvas)
}

/// "HEALPix level L: K cells", with how many of them are missing in the row drawn.
fn cells_label(req: &MapRequest<'_>) -> String {
    let missing = req.cell_values.iter().filter(|v| !v.is_finite()).count();
    let k = req.cell_ids.len();
    match missing {
        0 => format!("HEALPix level {}: {k} cells", req.grid.level()),
        m => format!("HEALPix level {}: {k} cells ({m} missing)", req.grid.level()),
    }
}

/// "var (units)", or the name alone without units.
fn bar_label(var: &str, units: &str) -> String {
    if units.trim().is_empty() {
        var.to_string()
    } else {
        format!("{var} ({units})")
    }
}

// ----------------------------------------------------------------------------------------------
// Views: a projection plane and the window of it that a panel shows.

/// A projection onto a plane (x to the right, y up).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Plane {
    /// x = (λ − λc)·k, y = φ in degrees: plate carrée with true scale on the parallel where
    /// cos φ = k, cut on the meridian opposite λc.
    Equirect { lon_c: f64, k: f64 },
    /// Mollweide on the unit-radius ellipse of semi-axes 2√2 and √2, central meridian 0.
    Mollweide,
    /// Orthographic on the unit sphere, centred on (lon0, lat0).
    Ortho { lon0: f64, lat0: f64 },
}

/// Wraps a longitude difference into [−180, 180).
fn wrap180(d: f64) -> f64 {
    (d + 180.0).rem_euclid(360.0) - 180.0
}

impl Plane {
    /// (lon, lat) in degrees → plane coordinates; None where the point is not drawn (the far side of
    /// an orthographic globe).
    fn project(self, lon: f64, lat: f64) -> Option<(f64, f64)> {
        match self {
            Plane::Equirect { lon_c, k } => Some((wrap180(lon - lon_c) * k, lat)),
            Plane::Mollweide => {
                let (phi, lam) = (lat.to_radians(), wrap180(lon).to_radians());
                let t = mollweide_theta(phi);
                Some((2.0 * SQRT_2 / PI * lam * t.cos(), SQRT_2 * t.sin()))
            }
            Plane::Ortho { lon0, lat0 } => {
                let (phi, dl) = (lat.to_radians(), (lon - lon0).to_radians());
                let (s0, c0) = lat0.to_radians().sin_cos();
                let (sp, cp) = phi.sin_cos();
                let cos_c = s0 * sp + c0 * cp * dl.cos();
                (cos_c >= 0.0).then(|| (cp * dl.sin(), c0 * sp - s0 * cp * dl.cos()))
            }
        }
    }

    /// Plane coordinates → (lon, lat) in degrees, or None off the globe.
    fn unproject(self, x: f64, y: f64) -> Option<(f64, f64)> {
        match self {
            Plane::Equirect { lon_c, k } => {
                let dl = x / k;
                (dl.abs() <= 180.0 && y.abs() <= 90.0).then(|| (wrap180(lon_c + dl), y))
            }
            Plane::Mollweide => {
                if x * x / 8.0 + y * y / 2.0 > 1.0 {
                    return None;
                }
                let t = (y / SQRT_2).clamp(-1.0, 1.0).asin();
                let lat = ((2.0 * t + (2.0 * t).sin()) / PI).clamp(-1.0, 1.0).asin();
                let c = t.cos();
                let lon = if c > 1e-12 { PI * x / (2.0 * SQRT_2 * c) } else { 0.0 };
                (lon.abs() <= PI).then(|| (lon.to_degrees(), lat.to_degrees()))
            }
            Plane::Ortho { lon0, lat0 } => {
                let rho = x.hypot(y);
                if rho > 1.0 {
                    return None;
                }
                if rho < 1e-15 {
                    return Some((lon0, lat0));
                }
                let c = rho.asin();
                let (s0, c0) = lat0.to_radians().sin_cos();
                let (sc, cc) = c.sin_cos();
                let lat = (cc * s0 + y * sc * c0 / rho).clamp(-1.0, 1.0).asin();
                let lon = lon0.to_radians() + (x * sc).atan2(rho * c0 * cc - y * s0 * sc);
                Some((wrap180(lon.to_degrees()), lat.to_degrees()))
            }
        }
    }

    /// Whether the segment between two projected points crosses the plane's cut (the meridian
    /// opposite the centre): it would otherwise be drawn straight across the map.
    fn jumps(self, a: (f64, f64), b: (f64, f64)) -> bool {
        match self {
            Plane::Equirect { k, .. } => (a.0 - b.0).abs() > 180.0 * k,
            Plane::Mollweide => (a.0 - b.0).abs() > 2.0 * SQRT_2,
            Plane::Ortho { .. } => false,
        }
    }
}

/// θ with 2θ + sin 2θ = π sin φ (Mollweide's auxiliary angle), by Newton's method.
fn mollweide_theta(phi: f64) -> f64 {
    let mut t = phi;
    for _ in 0..30 {
        let f = 2.0 * t + (2.0 * t).sin() - PI * phi.sin();
        let d = 2.0 + 2.0 * (2.0 * t).cos();
        if d.abs() < 1e-12 {
            break;
        }
        let step = f / d;
        t -= step;
        if step.abs() < 1e-13 {
            break;
        }
    }
    t
}

/// The window [x0, x1] × [y0, y1] of a plane that a panel shows.
#[derive(Debug, Clone, Copy, PartialEq)]
struct View {
    plane: Plane,
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl View {
    /// The whole globe in Mollweide.
    fn mollweide() -> Self {
        View { plane: Plane::Mollweide, x0: -2.0 * SQRT_2, x1: 2.0 * SQRT_2, y0: -SQRT_2, y1: SQRT_2 }
    }

    /// The whole globe in longitude/latitude, centred on Greenwich.
    fn lonlat() -> Self {
        View { plane: Plane::Equirect { lon_c: 0.0, k: 1.0 }, x0: -180.0, x1: 180.0, y0: -90.0, y1: 90.0 }
    }

    /// Height / width.
    fn aspect(&self) -> f64 {
        (self.y1 - self.y0) / (self.x1 - self.x0)
    }

    /// Pixel coordinates (origin top left, y down) in a w×h panel → (lon, lat), or None.
    fn pixel_to_lonlat(&self, px: f64, py: f64, w: f64, h: f64) -> Option<(f64, f64)> {
        let x = self.x0 + px / w * (self.x1 - self.x0);
        let y = self.y1 - py / h * (self.y1 - self.y0);
        self.plane.unproject(x, y)
    }

    /// Plane coordinates → pixel coordinates in a w×h panel (anywhere, also outside it).
    fn plane_to_pixel(&self, (x, y): (f64, f64), w: f64, h: f64) -> (f64, f64) {
        ((x - self.x0) / (self.x1 - self.x0) * w, (self.y1 - y) / (self.y1 - self.y0) * h)
    }

    /// The (lon, lat) of every pixel centre of a w×h panel, row by row.
    fn pixel_positions(&self, w: usize, h: usize) -> Vec<Option<(f64, f64)>> {
        (0..w * h)
            .into_par_iter()
            .map(|i| self.pixel_to_lonlat((i % w) as f64 + 0.5, (i / w) as f64 + 0.5, w as f64, h as f64))
            .collect()
    }

    /// True when the view is the whole globe (no edge labels, a 30° graticule).
    fn is_global(&self) -> bool {
        *self == View::mollweide() || *self == View::lonlat()
    }
}

/// Longitudes and latitudes of what is drawn and valid: the cells' centres and the input samples.
fn data_positions(req: &MapRequest<'_>) -> (Vec<f64>, Vec<f64>) {
    let mut lon = Vec::new();
    let mut lat = Vec::new();
    for (&id, &v) in req.cell_ids.iter().zip(req.cell_values) {
        if let (true, Ok((x, y))) = (v.is_finite(), req.grid.center(id)) {
            lon.push(x);
            lat.push(y);
        }
    }
    if let Some(p) = &req.input {
        for ((&x, &y), &v) in p.lon.iter().zip(p.lat).zip(p.values) {
            if v.is_finite() && x.is_finite() && y.is_finite() && y.abs() <= 90.0 {
                lon.push(x);
                lat.push(y);
            }
        }
    }
    (lon, lat)
}

/// Where data lie: the shortest longitude arc holding them (from `west`, eastwards over `span`
/// degrees, possibly across the antimeridian) and their latitude range.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Extent {
    west: f64,
    span: f64,
    south: f64,
    north: f64,
}

/// Global data: spread over at least this many degrees of longitude and of latitude.
const GLOBAL_LON_SPAN: f64 = 300.0;
const GLOBAL_LAT_SPAN: f64 = 120.0;
/// Data reaching this close to a pole (and staying in its hemisphere) get a polar view: a lon/lat
/// box stretches the last degrees before a pole too much (a grid ending at 75°N keeps its box).
const POLAR_LAT: f64 = 80.0;

/// The extent of a set of positions (None when empty): the complement of the widest longitude gap.
fn extent(lon: &[f64], lat: &[f64]) -> Option<Extent> {
    // a sample of at most ~200 000 positions is plenty to find the extent
    let stride = (lon.len() / 200_000).max(1);
    let mut l: Vec<f64> = lon.iter().step_by(stride).map(|x| x.rem_euclid(360.0)).collect();
    if l.is_empty() {
        return None;
    }
    l.sort_by(f64::total_cmp);
    let (mut gap, mut after) = (l[0] + 360.0 - l[l.len() - 1], 0);
    for i in 1..l.len() {
        if l[i] - l[i - 1] > gap {
            (gap, after) = (l[i] - l[i - 1], i);
        }
    }
    let (south, north) = lat.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(s, n), &y| (s.min(y), n.max(y)));
    Some(Extent { west: wrap180(l[after]), span: 360.0 - gap, south, north })
}

/// The view of a projection for data at the given positions.
fn choose_view(projection: Projection, lon: &[f64], lat: &[f64]) -> View {
    let e = extent(lon, lat);
    match (projection, e) {
        (Projection::Lonlat, _) => View::lonlat(),
        (Projection::Mollweide, _) | (_, None) => View::mollweide(),
        (Projection::Orthographic, Some(_)) => hemisphere(lon, lat),
        (Projection::Auto, Some(e)) => {
            if e.span >= GLOBAL_LON_SPAN && e.north - e.south >= GLOBAL_LAT_SPAN {
                View::mollweide()
            } else if e.north >= POLAR_LAT && e.south >= 0.0 {
                polar_view(true, &e, lon, lat)
            } else if e.south <= -POLAR_LAT && e.north <= 0.0 {
                polar_view(false, &e, lon, lat)
            } else {
                fitted_box(&e)
            }
        }
    }
}

/// The orthographic hemisphere centred on the mean direction of the positions.
fn hemisphere(lon: &[f64], lat: &[f64]) -> View {
    let mut m = [0.0; 3];
    for (&x, &y) in lon.iter().zip(lat) {
        let u = unit_vector(x.to_radians(), y.to_radians());
        (0..3).for_each(|k| m[k] += u[k]);
    }
    let r = (m[0] * m[0] + m[1] * m[1]).sqrt();
    let (lon0, lat0) =
        if r + m[2].abs() > 0.0 { (m[1].atan2(m[0]).to_degrees(), m[2].atan2(r).to_degrees()) } else { (0.0, 0.0) };
    View { plane: Plane::Ortho { lon0, lat0 }, x0: -1.02, x1: 1.02, y0: -1.02, y1: 1.02 }
}

/// Grows the shorter side of a window (about its centre, within `limit`) until its aspect
/// (height / width) lies in [lo, hi].
fn fit_aspect(win: [f64; 4], (lo, hi): (f64, f64), limit: [f64; 4]) -> [f64; 4] {
    let [mut x0, mut x1, mut y0, mut y1] = win;
    let grow = |a: &mut f64, b: &mut f64, want: f64, min: f64, max: f64| {
        let extra = (want - (*b - *a)) / 2.0;
        if extra <= 0.0 {
            return;
        }
        // centred, then shifted back inside the limits, then cut to them
        let (mut na, mut nb) = (*a - extra, *b + extra);
        if na < min {
            (na, nb) = (min, nb + (min - na));
        }
        if nb > max {
            (na, nb) = (na - (nb - max), max);
        }
        (*a, *b) = (na.max(min), nb.min(max));
    };
    let aspect = (y1 - y0) / (x1 - x0);
    if aspect < lo {
        grow(&mut y0, &mut y1, lo * (x1 - x0), limit[2], limit[3]);
    } else if aspect > hi {
        grow(&mut x0, &mut x1, (y1 - y0) / hi, limit[0], limit[1]);
    }
    [x0, x1, y0, y1]
}

/// A margin around regional data: 5% of the larger side, at least half a degree.
fn margin(width: f64, height: f64) -> f64 {
    (0.05 * width.max(height)).max(0.5)
}

/// A longitude/latitude box around regional data, true to scale at its middle latitude.
fn fitted_box(e: &Extent) -> View {
    let lon_c = wrap180(e.west + e.span / 2.0);
    let k = ((e.south + e.north) / 2.0).to_radians().cos().max(0.35);
    let half = (e.span / 2.0).max(0.5) * k;
    let (south, north) = if e.north - e.south < 1.0 {
        ((e.south + e.north) / 2.0 - 0.5, (e.south + e.north) / 2.0 + 0.5)
    } else {
        (e.south, e.north)
    };
    let m = margin(2.0 * half, north - south);
    let xmax = 180.0 * k;
    let win = [(-half - m).max(-xmax), (half + m).min(xmax), (south - m).max(-90.0), (north + m).min(90.0)];
    let [x0, x1, y0, y1] = fit_aspect(win, (0.35, 1.2), [-xmax, xmax, -90.0, 90.0]);
    View { plane: Plane::Equirect { lon_c, k }, x0, x1, y0, y1 }
}

/// An orthographic view of a pole fitted around the data; the data's middle meridian points down
/// from the north pole (up from the south pole), Greenwich when they go all the way round.
fn polar_view(north: bool, e: &Extent, lon: &[f64], lat: &[f64]) -> View {
    let lon0 = if e.span >= GLOBAL_LON_SPAN { 0.0 } else { wrap180(e.west + e.span / 2.0) };
    let plane = Plane::Ortho { lon0, lat0: if north { 90.0 } else { -90.0 } };
    let stride = (lon.len() / 200_000).max(1);
    let [mut x0, mut x1, mut y0, mut y1] = [f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY];
    for (&x, &y) in lon.iter().zip(lat).step_by(stride) {
        if let Some((px, py)) = plane.project(x, y) {
            (x0, x1, y0, y1) = (x0.min(px), x1.max(px), y0.min(py), y1.max(py));
        }
    }
    let m = 0.05 * (x1 - x0).max(y1 - y0).max(0.02);
    let win = [(x0 - m).max(-1.02), (x1 + m).min(1.02), (y0 - m).max(-1.02), (y1 + m).min(1.02)];
    let [x0, x1, y0, y1] = fit_aspect(win, (0.6, 1.4), [-1.02, 1.02, -1.02, 1.02]);
    View { plane, x0, x1, y0, y1 }
}

// ----------------------------------------------------------------------------------------------
// The nearest-sample fill of the input panel.

/// Radius of the sphere the spacings are measured on (m).
const EARTH_RADIUS_M: f64 = 6_371_000.0;
/// A sample fills the pixels within this many local sample spacings of it (plus half a pixel's
/// diagonal, so that a pixel larger than the spacing is filled wherever it holds samples).
const REACH: f64 = 1.0;
/// The local spacing used is at most this many median spacings.
const MOST_LOCAL: f64 = 4.0;
/// Any point of a bucket cell is at least this many cell sizes from the outside of its ring-k
/// neighbourhood, per ring (HEALPix cells are diamonds, thinner than wide near the poles).
const RING_COVER: f64 = 0.5;

/// The level of the fine hashes that buckets are made from (a coarser level is a bit shift away).
const FINE: u8 = 24;

/// Samples grouped by HEALPix cell (nested, on a sphere) at one level.
struct Buckets {
    grid: Grid,
    /// The occupied cells, ascending, and where their samples start (one more at the end).
    cells: Vec<u64>,
    starts: Vec<usize>,
}

impl Buckets {
    /// The buckets at `level` of samples sorted by their level-[`FINE`] hashes.
    fn at(level: u8, sorted: &[(u64, usize)]) -> Self {
        let shift = 2 * (FINE - level) as u32;
        let (mut cells, mut starts) = (Vec::new(), Vec::new());
        for (k, &(h, _)) in sorted.iter().enumerate() {
            if cells.last() != Some(&(h >> shift)) {
                cells.push(h >> shift);
                starts.push(k);
            }
        }
        starts.push(sorted.len());
        Buckets { grid: Grid::new(level, true, Ellipsoid::Sphere).expect("a valid level"), cells, starts }
    }

    /// The finest level whose occupied cells hold 2 samples or more on average: cells about as
    /// wide as the samples are apart.
    fn spacing_level(sorted: &[(u64, usize)]) -> u8 {
        (0..=FINE)
            .rev()
            .find(|&l| {
                let shift = 2 * (FINE - l) as u32;
                let distinct = 1 + sorted.windows(2).filter(|w| w[0].0 >> shift != w[1].0 >> shift).count();
                sorted.len() >= 2 * distinct
            })
            .unwrap_or(0)
    }

    /// The positions (in bucket order) of the samples in cell `c`.
    fn samples_of(&self, c: u64) -> Range<usize> {
        match self.cells.binary_search(&c) {
            Ok(b) => self.starts[b]..self.starts[b + 1],
            Err(_) => 0..0,
        }
    }

    /// The local sample spacing (radians) around every bucket: the square root of the area per
    /// sample in its occupied neighbour cells (its 3×3 block).
    fn local_spacings(&self) -> Vec<f64> {
        let cell_area = 4.0 * PI / self.grid.n_cells() as f64;
        (0..self.cells.len())
            .into_par_iter()
            .map(|b| {
                let near = self.grid.kth_neighbourhood(self.cells[b], 1).unwrap_or_default();
                let (mut occupied, mut count) = (0usize, 0usize);
                for r in near.into_iter().map(|c| self.samples_of(c)).filter(|r| !r.is_empty()) {
                    occupied += 1;
                    count += r.len();
                }
                (cell_area * occupied as f64 / count.max(1) as f64).sqrt()
            })
            .collect()
    }

    /// The median over samples of a per-bucket quantity.
    fn median(&self, per_bucket: &[f64]) -> f64 {
        let mut v: Vec<(f64, usize)> =
            per_bucket.iter().enumerate().map(|(b, &s)| (s, self.starts[b + 1] - self.starts[b])).collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        let half = self.starts[self.cells.len()] / 2;
        let mut seen = 0;
        v.into_iter()
            .find(|&(_, n)| {
                seen += n;
                seen > half
            })
            .map_or(0.0, |(s, _)| s)
    }
}

/// The samples with a position, bucketed by HEALPix cell for nearest-neighbour searches.
struct SampleIndex {
    /// Buckets about 1.5 median sample spacings wide.
    buckets: Buckets,
    /// Per sample, in bucket order: unit vector, value, and the angle (radians) within which it
    /// fills a pixel (its reach); the largest reach.
    xyz: Vec<[f64; 3]>,
    values: Vec<f64>,
    reach: Vec<f64>,
    widest: f64,
    /// The angle (radians) that each ring of neighbour cells is sure to cover.
    ring_angle: f64,
}

/// The squared chord of an angle (radians) on the unit sphere.
fn chord2_of(angle: f64) -> f64 {
    let c = 2.0 * (angle.min(PI) / 2.0).sin();
    c * c
}

impl SampleIndex {
    /// Buckets the samples with a valid position (missing values included: a pixel nearest to a
    /// missing sample, e.g. a land point of an ocean grid, is missing). None without any.
    ///
    /// The median spacing comes from the sample density in cells about as wide as the samples are
    /// apart (cheaper than `kernel::sample_spacing_m`, and enough for drawing).
    fn new(p: &MapPoints<'_>) -> Option<Self> {
        let keep: Vec<usize> = (0..p.values.len())
            .filter(|&i| p.lon[i].is_finite() && p.lat[i].is_finite() && p.lat[i].abs() <= 90.0)
            .collect();
        if keep.is_empty() {
            return None;
        }
        let fine = Grid::new(FINE, true, Ellipsoid::Sphere).expect("a valid level");
        let mut order: Vec<(u64, usize)> =
            keep.par_iter().map(|&i| (fine.cell(p.lon[i], p.lat[i]).expect("a checked position"), i)).collect();
        order.par_sort_unstable();
        let dense = Buckets::at(Buckets::spacing_level(&order), &order);
        let spacing = dense.median(&dense.local_spacings());
        let level = healpix_psf::kernel::level_for_spacing(1.5 * spacing * EARTH_RADIUS_M).unwrap_or(0).min(FINE);
        let buckets = if level == dense.grid.level() { dense } else { Buckets::at(level, &order) };
        let local: Vec<f64> =
            buckets.local_spacings().into_iter().map(|s| s.clamp(spacing, MOST_LOCAL * spacing)).collect();
        let mut reach = vec![0.0; order.len()];
        for (b, s) in local.iter().enumerate() {
            reach[buckets.starts[b]..buckets.starts[b + 1]].fill(REACH * s);
        }
        let ring_angle = RING_COVER * (4.0 * PI / buckets.grid.n_cells() as f64).sqrt();
        let widest = local.iter().fold(spacing, |a, &b| a.max(b)) * REACH;
        Some(SampleIndex {
            buckets,
            xyz: order.iter().map(|&(_, i)| unit_vector(p.lon[i].to_radians(), p.lat[i].to_radians())).collect(),
            values: order.iter().map(|&(_, i)| p.values[i]).collect(),
            reach,
            widest,
            ring_angle,
        })
    }

    /// The sample ranges of the ring-k neighbourhood of a cell.
    fn neighbourhood(&self, cell: u64, k: u32, out: &mut Vec<Range<usize>>) {
        out.clear();
        for c in self.buckets.grid.kth_neighbourhood(cell, k).unwrap_or_default() {
            let r = self.buckets.samples_of(c);
            if !r.is_empty() {
                out.push(r);
            }
        }
    }

    /// The value at a pixel centre `v` (lon, lat given too) of a pixel `radius` wide (radians):
    /// its nearest sample's (NaN for a missing one), or NaN when the pixel is beyond that sample's
    /// reach.
    fn value_at(&self, (lon, lat): (f64, f64), v: &[f64; 3], radius: f64, cache: &mut NeighbourCache) -> f64 {
        let Ok(cell) = self.buckets.grid.cell(lon, lat) else { return f64::NAN };
        let rings =
            (((self.widest + radius) / self.ring_angle).ceil() as u32).clamp(1, self.buckets.grid.nside().min(8));
        let mut best: Option<(f64, usize)> = None;
        for k in 1..=rings {
            let ranges = cache.get(self, cell, k);
            for r in ranges {
                for i in r.clone() {
                    let d = chord2(v, &self.xyz[i]);
                    // on a tie (duplicated positions) a valid value wins
                    let better = match best {
                        None => true,
                        Some((b, j)) => d < b || (d == b && self.values[i].is_finite() && !self.values[j].is_finite()),
                    };
                    if better {
                        best = Some((d, i));
                    }
                }
            }
            // nothing outside the ring-k block is nearer than what it surely covers
            if best.is_some_and(|(d, _)| d <= chord2_of(k as f64 * self.ring_angle)) {
                break;
            }
        }
        match best {
            Some((d, i)) if d <= chord2_of(self.reach[i] + radius) => self.values[i],
            _ => f64::NAN,
        }
    }

    /// The value of every pixel of a panel (NaN missing or off the globe), rows in parallel.
    fn fill(&self, positions: &[Option<(f64, f64)>], w: usize) -> Vec<f64> {
        let mut out = vec![f64::NAN; positions.len()];
        out.par_chunks_mut(w).zip(positions.par_chunks(w)).for_each(|(row, pos)| {
            let mut cache = NeighbourCache::default();
            let xyz: Vec<Option<[f64; 3]>> =
                pos.iter().map(|p| p.map(|(lon, lat)| unit_vector(lon.to_radians(), lat.to_radians()))).collect();
            for (x, o) in row.iter_mut().enumerate() {
                if let (Some(p), Some(v)) = (pos[x], &xyz[x]) {
                    *o = self.value_at(p, v, pixel_radius(&xyz, x), &mut cache);
                }
            }
        });
        out
    }
}

/// Half the diagonal (radians) of pixel x of a row of pixel-centre unit vectors, from the distance
/// to its neighbour in the row (0 when it has none on the globe).
fn pixel_radius(row: &[Option<[f64; 3]>], x: usize) -> f64 {
    let here = row[x].as_ref();
    let next = row.get(x + 1).and_then(Option::as_ref).or_else(|| x.checked_sub(1).and_then(|l| row[l].as_ref()));
    match (here, next) {
        (Some(a), Some(b)) => 2.0 * (chord2(a, b).sqrt() / 2.0).min(1.0).asin() * SQRT_2 / 2.0,
        _ => 0.0,
    }
}

/// The last neighbourhood looked up at each ring: its cell and sample ranges (neighbouring pixels
/// mostly share them).
#[derive(Default)]
struct NeighbourCache {
    rings: Vec<(Option<u64>, Vec<Range<usize>>)>,
}

impl NeighbourCache {
    /// The sample ranges of the ring-k neighbourhood of a cell, looked up when not cached.
    fn get(&mut self, index: &SampleIndex, cell: u64, k: u32) -> &[Range<usize>] {
        let k = k as usize;
        if self.rings.len() < k {
            self.rings.resize_with(k, Default::default);
        }
        let (key, ranges) = &mut self.rings[k - 1];
        if *key != Some(cell) {
            index.neighbourhood(cell, k as u32, ranges);
            *key = Some(cell);
        }
        ranges
    }
}

/// The value of every pixel of the cells' panel: the value of the cell its centre falls in.
fn fill_cells(req: &MapRequest<'_>, positions: &[Option<(f64, f64)>]) -> Vec<f64> {
    positions
        .par_iter()
        .map(|p| {
            p.and_then(|(lon, lat)| req.grid.cell(lon, lat).ok())
                .and_then(|id| req.cell_ids.binary_search(&id).ok())
                .map_or(f64::NAN, |k| req.cell_values[k])
        })
        .collect()
}

// ----------------------------------------------------------------------------------------------
// Colours.

/// The colours: a range, and whether values lie beyond either end of it.
struct ColourScale {
    /// None when there is no finite value to draw.
    range: Option<(f64, f64)>,
    below: bool,
    above: bool,
}

impl ColourScale {
    /// The 1st–99th percentiles of the finite values drawn (cells, and the input when drawn), so
    /// that a few outliers do not wash the map out.
    fn new(req: &MapRequest<'_>) -> Self {
        let input = req.input.as_ref().map_or(&[][..], |p| p.values);
        let values: Vec<f64> = req.cell_values.iter().chain(input).copied().filter(|x| x.is_finite()).collect();
        Self::of(values)
    }

    fn of(mut v: Vec<f64>) -> Self {
        if v.is_empty() {
            return ColourScale { range: None, below: false, above: false };
        }
        v.par_sort_unstable_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        let (lo, hi) = (at(0.01), at(0.99));
        let range = if hi > lo { (lo, hi) } else { (lo - 0.5, lo + 0.5) };
        ColourScale { range: Some(range), below: v[0] < range.0, above: v[v.len() - 1] > range.1 }
    }

    /// The colour of a value (None for a missing one).
    fn colour(&self, v: f64) -> Option<[u8; 3]> {
        let (lo, hi) = self.range?;
        v.is_finite().then(|| colour((v - lo) / (hi - lo)))
    }
}

/// The colour map: own control points from deep blue through cyan and yellow to dark red.
fn colour(t: f64) -> [u8; 3] {
    const STOPS: [(f64, [f64; 3]); 6] = [
        (0.0, [40.0, 20.0, 90.0]),
        (0.2, [50.0, 100.0, 215.0]),
        (0.4, [45.0, 185.0, 200.0]),
        (0.6, [165.0, 215.0, 80.0]),
        (0.8, [245.0, 170.0, 45.0]),
        (1.0, [170.0, 25.0, 30.0]),
    ];
    let t = t.clamp(0.0, 1.0);
    let i = STOPS.iter().rposition(|s| s.0 <= t).unwrap_or(0).min(STOPS.len() - 2);
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let f = (t - a.0) / (b.0 - a.0);
    std::array::from_fn(|k| (a.1[k] + (b.1[k] - a.1[k]) * f).round() as u8)
}

/// Tick values inside [lo, hi] at a "nice" step (1, 2, 2.5 or 5 × 10^k): the finest step giving
/// at most 8 ticks (so 4 or more, as the steps grow at most 2-fold), and the step.
fn nice_ticks(lo: f64, hi: f64) -> (Vec<f64>, f64) {
    let span = hi - lo;
    if !(span.is_finite() && span > 0.0) {
        return (vec![lo], 1.0);
    }
    let mut e = (span / 8.0).log10().floor() as i32 - 1;
    loop {
        for m in [1.0, 2.0, 2.5, 5.0] {
            let step = m * 10f64.powi(e);
            let (first, last) = ((lo / step - 1e-9).ceil() as i64, (hi / step + 1e-9).floor() as i64);
            if last - first < 8 {
                return ((first..=last).map(|i| i as f64 * step).collect(), step);
            }
        }
        e += 1;
    }
}

/// A tick label with as many decimals as the step needs (scientific for very large or small).
fn tick_label(v: f64, step: f64) -> String {
    let v = if v.abs() < step * 1e-6 { 0.0 } else { v };
    let big = v.abs().max(step);
    if big >= 1e6 || step < 1e-4 {
        let digits = ((big.log10().floor() - step.log10().floor()).max(0.0) as usize + 1).min(6);
        return format!("{v:.digits$e}");
    }
    let mut digits = (-step.log10().floor()).max(0.0) as usize;
    if ((step / 10f64.powi(-(digits as i32))) - (step / 10f64.powi(-(digits as i32))).round()).abs() > 1e-6 {
        digits += 1; // 2.5 × 10^k
    }
    format!("{v:.digits$}")
}

// ----------------------------------------------------------------------------------------------
// Canvas and drawing.

const WHITE: [u8; 3] = [255, 255, 255];
const MISSING: [u8; 3] = [205, 205, 205];
const INK: [u8; 3] = [25, 25, 25];

/// A rectangle of the canvas, in pixels.
#[derive(Debug, Clone, Copy)]
struct Rect {
    x: usize,
    y: usize,
    w: usize,
    h: usize,
}

struct Canvas {
    w: usize,
    h: usize,
    rgb: Vec<u8>,
}

impl Canvas {
    fn new(w: usize, h: usize) -> Self {
        Canvas { w, h, rgb: vec![255; w * h * 3] }
    }

    fn set(&mut self, x: usize, y: usize, c: [u8; 3]) {
        if x < self.w && y < self.h {
            let i = (y * self.w + x) * 3;
            self.rgb[i..i + 3].copy_from_slice(&c);
        }
    }

    /// Blends `c` over the pixel with opacity `a`.
    fn blend(&mut self, x: usize, y: usize, c: [u8; 3], a: f64) {
        if x < self.w && y < self.h {
            let i = (y * self.w + x) * 3;
            for (p, &q) in self.rgb[i..i + 3].iter_mut().zip(&c) {
                *p = (*p as f64 * (1.0 - a) + q as f64 * a).round() as u8;
            }
        }
    }

    /// ASCII text with its top-left corner at (x, y), 8×8 glyphs scaled by `scale`.
    fn text(&mut self, x: usize, y: usize, s: &str, scale: usize) {
        for (i, ch) in s.chars().enumerate() {
            let code = if ch.is_ascii() { ch as usize } else { b'?' as usize };
            let glyph = font8x8::legacy::BASIC_LEGACY[code];
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        for dy in 0..scale {
                            for dx in 0..scale {
                                self.set(x + (i * 8 + col) * scale + dx, y + row * scale + dy, INK);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Text centred on x, kept inside the canvas.
    fn text_centred(&mut self, x: usize, y: usize, s: &str, scale: usize) {
        let tw = text_width(s, scale);
        self.text(x.saturating_sub(tw / 2).min(self.w.saturating_sub(tw)), y, s, scale);
    }

    /// A 1-pixel line from a to b (panel pixel coordinates), blended, clipped to the panel.
    fn line(&mut self, panel: Rect, a: (f64, f64), b: (f64, f64), c: [u8; 3], alpha: f64) {
        let Some((a, b)) = clip(a, b, panel.w as f64, panel.h as f64) else { return };
        let steps = (b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil().max(1.0) as usize;
        let mut last = None;
        for s in 0..=steps {
            let t = s as f64 / steps as f64;
            let (x, y) = (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
            let (px, py) = (x.floor(), y.floor());
            if px < 0.0 || py < 0.0 || px >= panel.w as f64 || py >= panel.h as f64 || last == Some((px, py)) {
                continue;
            }
            last = Some((px, py));
            self.blend(panel.x + px as usize, panel.y + py as usize, c, alpha);
        }
    }
}

fn text_width(s: &str, scale: usize) -> usize {
    s.chars().count() * 8 * scale
}

/// The part of segment a–b inside [0, w] × [0, h] (Liang–Barsky), or None.
fn clip(a: (f64, f64), b: (f64, f64), w: f64, h: f64) -> Option<((f64, f64), (f64, f64))> {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (p, q) in [(-dx, a.0), (dx, w - a.0), (-dy, a.1), (dy, h - a.1)] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else {
            let r = q / p;
            if p < 0.0 {
                t0 = t0.max(r);
            } else {
                t1 = t1.min(r);
            }
        }
    }
    (t0 <= t1).then_some(((a.0 + t0 * dx, a.1 + t0 * dy), (a.0 + t1 * dx, a.1 + t1 * dy)))
}

/// The canvas layout: margins, panel placement and where the colour bar goes.
struct Layout {
    w: usize,
    h: usize,
    margin_left: usize,
    gap: usize,
    top: usize,
    panel_h: usize,
    /// Pixels below the panels taken by edge labels.
    labels_below: usize,
}

impl Layout {
    fn new(req: &MapRequest<'_>, view: &View, pw: usize, ph: usize) -> Self {
        let n = if req.input.is_some() { 2 } else { 1 };
        let labelled = edge_labels(view);
        let margin_left = if labelled { 48 } else { 20 };
        let gap = if labelled { 60 } else { 30 };
        let top = if req.row_label.is_empty() { 50 } else { 64 };
        let labels_below = if labelled { 16 } else { 0 };
        let w = margin_left + n * pw + (n - 1) * gap + 20;
        // a narrow map puts the colour bar's note on two lines and the missing swatch under it
        let h = top + ph + labels_below + if w < 720 { 150 } else { 110 };
        Layout { w, h, margin_left, gap, top, panel_h: ph, labels_below }
    }
}

/// The title: the variable and, on a second line, the row drawn.
fn draw_title(c: &mut Canvas, req: &MapRequest<'_>) {
    let scale = if text_width(req.var, 2) + 40 <= c.w { 2 } else { 1 };
    c.text_centred(c.w / 2, 8, req.var, scale);
    if !req.row_label.is_empty() {
        c.text_centred(c.w / 2, 30, req.row_label, 1);
    }
}

/// Colours a panel: the value of each pixel, missing-grey on the globe, white off it.
fn paint(c: &mut Canvas, panel: Rect, positions: &[Option<(f64, f64)>], values: Option<&[f64]>, s: &ColourScale) {
    for (i, p) in positions.iter().enumerate() {
        let colour = match p {
            None => WHITE,
            Some(_) => values.and_then(|v| s.colour(v[i])).unwrap_or(MISSING),
        };
        c.set(panel.x + i % panel.w, panel.y + i / panel.w, colour);
    }
}

/// The graticule, coastlines, edge labels, a frame and the label of a panel.
fn decorate(c: &mut Canvas, panel: Rect, view: &View, label: &str) {
    let (lon_step, lat_step) = graticule_steps(view);
    for line in graticule(lon_step, lat_step) {
        polyline(c, panel, view, &line, INK, 0.18);
    }
    for line in coast::coastlines() {
        polyline(c, panel, view, line, INK, 0.7);
    }
    if view.plane != Plane::Mollweide {
        frame(c, panel);
    }
    if edge_labels(view) {
        label_edges(c, panel, view, lon_step, lat_step);
    }
    if let Plane::Ortho { lon0, lat0 } = view.plane {
        if lat0.abs() == 90.0 {
            label_parallels(c, panel, view, lon0, lat_step);
        }
    }
    c.text_centred(panel.x + panel.w / 2, panel.y.saturating_sub(14), label, 1);
}

/// Labels the parallels of a polar view where they cross its central meridian.
fn label_parallels(c: &mut Canvas, p: Rect, view: &View, lon0: f64, lat_step: f64) {
    let (w, h) = (p.w as f64, p.h as f64);
    let inside = |(x, y): (f64, f64)| x >= 0.0 && y >= 12.0 && x < w - 40.0 && y < h - 2.0;
    let mut lat = (-90.0 / lat_step).ceil() * lat_step;
    while lat < 90.0 {
        if lat.abs() < 90.0 {
            if let Some(at) = view.plane.project(lon0, lat).map(|q| view.plane_to_pixel(q, w, h)).filter(|&q| inside(q))
            {
                c.text(p.x + at.0 as usize + 4, p.y + (at.1 as usize).saturating_sub(10), &lat_text(lat), 1);
            }
        }
        lat += lat_step;
    }
}

/// A thin frame around a panel.
fn frame(c: &mut Canvas, p: Rect) {
    for x in p.x..p.x + p.w {
        c.blend(x, p.y, INK, 0.6);
        c.blend(x, p.y + p.h - 1, INK, 0.6);
    }
    for y in p.y..p.y + p.h {
        c.blend(p.x, y, INK, 0.6);
        c.blend(p.x + p.w - 1, y, INK, 0.6);
    }
}

/// Draws a lon/lat polyline, split where it leaves the visible globe or jumps across the cut.
fn polyline(c: &mut Canvas, panel: Rect, view: &View, line: &[(f64, f64)], ink: [u8; 3], alpha: f64) {
    let (w, h) = (panel.w as f64, panel.h as f64);
    let mut prev: Option<(f64, f64)> = None;
    for &(lon, lat) in line {
        let here = view.plane.project(lon, lat);
        if let (Some(a), Some(b)) = (prev, here) {
            if !view.plane.jumps(a, b) {
                c.line(panel, view.plane_to_pixel(a, w, h), view.plane_to_pixel(b, w, h), ink, alpha);
            }
        }
        prev = here;
    }
}

/// Graticule steps (lon, lat) in degrees: 30° on the globe, else about 4–8 lines across the view.
fn graticule_steps(view: &View) -> (f64, f64) {
    let pick = |span: f64, most: f64| {
        [0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 45.0].into_iter().find(|&s| span / s <= most).unwrap_or(60.0)
    };
    match view.plane {
        _ if view.is_global() => (30.0, 30.0),
        Plane::Equirect { k, .. } => (pick((view.x1 - view.x0) / k, 8.0), pick(view.y1 - view.y0, 6.0)),
        // the arc from the centre to the farthest side of the window: the latitudes a polar view
        // shows, half those of another
        Plane::Ortho { lat0, .. } => {
            let reach = [view.x0, view.x1, view.y0, view.y1].iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let arc = reach.min(1.0).asin().to_degrees();
            (30.0, if lat0.abs() == 90.0 { pick(arc, 5.0) } else { pick(2.0 * arc, 6.0) })
        }
        Plane::Mollweide => (30.0, 30.0),
    }
}

/// The meridians and parallels at the given steps, densely sampled.
fn graticule(lon_step: f64, lat_step: f64) -> Vec<Vec<(f64, f64)>> {
    let dense = |from: f64, to: f64| {
        let n = ((to - from) / 0.25).ceil() as usize;
        (0..=n).map(move |i| from + (to - from) * i as f64 / n as f64)
    };
    let mut lines = Vec::new();
    let mut lon = -180.0;
    while lon < 180.0 - 1e-9 {
        // meridians stop short of the poles, where they would all meet
        let (south, north) = (-90.0 + lat_step.min(10.0), 90.0 - lat_step.min(10.0));
        lines.push(dense(south, north).map(|lat| (lon, lat)).collect());
        lon += lon_step;
    }
    let mut lat = (-90.0 / lat_step).ceil() * lat_step;
    while lat < 90.0 - 1e-9 {
        if lat > -90.0 {
            lines.push(dense(-180.0, 180.0).map(|lon| (lon, lat)).collect());
        }
        lat += lat_step;
    }
    lines
}

/// Whether a view gets longitude/latitude labels on its edges (lon/lat boxes, where meridians and
/// parallels meet the edges at right angles).
fn edge_labels(view: &View) -> bool {
    matches!(view.plane, Plane::Equirect { .. })
}

/// A longitude as text: 120W, 0, 60E, 180.
fn lon_text(lon: f64) -> String {
    let l = wrap180(lon);
    let l = if (l + 180.0).abs() < 1e-9 { 180.0 } else { l };
    let v = trim_number(l.abs());
    match l {
        _ if l.abs() < 1e-9 || (l.abs() - 180.0).abs() < 1e-9 => v,
        _ if l < 0.0 => format!("{v}W"),
        _ => format!("{v}E"),
    }
}

/// A latitude as text: 30S, 0, 45N.
fn lat_text(lat: f64) -> String {
    let v = trim_number(lat.abs());
    match lat {
        _ if lat.abs() < 1e-9 => v,
        _ if lat < 0.0 => format!("{v}S"),
        _ => format!("{v}N"),
    }
}

/// A number without trailing zeros (the graticule steps are multiples of 0.5).
fn trim_number(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}

/// Longitudes under the bottom edge and latitudes left of the left edge of a lon/lat box.
fn label_edges(c: &mut Canvas, p: Rect, view: &View, lon_step: f64, lat_step: f64) {
    let Plane::Equirect { lon_c, k } = view.plane else { return };
    let (w, h) = (p.w as f64, p.h as f64);
    let first = ((lon_c + view.x0 / k) / lon_step).ceil() as i64;
    let last = ((lon_c + view.x1 / k) / lon_step).floor() as i64;
    // every tick, but a label only every `every` ticks where "150W" would not fit between them
    let tick_px = lon_step * k / (view.x1 - view.x0) * w;
    let every = ((text_width("150W", 1) + 8) as f64 / tick_px).ceil().max(1.0) as i64;
    for i in first..=last {
        let lon = i as f64 * lon_step;
        let (px, _) = view.plane_to_pixel(((lon - lon_c) * k, view.y0), w, h);
        let x = p.x + px.round().clamp(0.0, w - 1.0) as usize;
        (0..4).for_each(|d| c.set(x, p.y + p.h + d, INK));
        if i.rem_euclid(every) == 0 {
            c.text_centred(x, p.y + p.h + 6, &lon_text(lon), 1);
        }
    }
    let (first, last) = ((view.y0 / lat_step).ceil() as i64, (view.y1 / lat_step).floor() as i64);
    for i in first..=last {
        let lat = i as f64 * lat_step;
        let (_, py) = view.plane_to_pixel((view.x0, lat), w, h);
        let y = p.y + py.round().clamp(0.0, h - 1.0) as usize;
        (1..5).for_each(|d| c.set(p.x.saturating_sub(d), y, INK));
        let s = lat_text(lat);
        c.text(p.x.saturating_sub(6 + text_width(&s, 1)), y.saturating_sub(4), &s, 1);
    }
}

/// The colour bar under the panels: nice ticks, the variable and its units, arrows at the ends
/// where values lie beyond the range (clipped to the end colours), and the missing-grey swatch.
fn draw_colour_bar(c: &mut Canvas, layout: &Layout, s: &ColourScale, label: &str) {
    let y = layout.top + layout.panel_h + layout.labels_below + 22;
    let (bw, bh) = ((c.w * 3 / 5).clamp(200, 900), 16usize);
    let bx = (c.w - bw) / 2;
    let Some((lo, hi)) = s.range else {
        c.text_centred(c.w / 2, y, &format!("{label}: no valid value to draw"), 1);
        return;
    };
    for x in 0..bw {
        let col = colour(x as f64 / (bw - 1) as f64);
        (0..bh).for_each(|d| c.set(bx + x, y + d, col));
    }
    outline(c, Rect { x: bx, y, w: bw, h: bh });
    let aw = bh;
    if s.below {
        arrow(c, bx, y, aw, bh, false);
    }
    if s.above {
        arrow(c, bx + bw - 1, y, aw, bh, true);
    }
    let (ticks, step) = nice_ticks(lo, hi);
    for t in ticks {
        let x = bx + ((t - lo) / (hi - lo) * (bw - 1) as f64).round().clamp(0.0, (bw - 1) as f64) as usize;
        (0..5).for_each(|d| c.set(x, y + bh + d, INK));
        c.text_centred(x, y + bh + 8, &tick_label(t, step), 1);
    }
    c.text_centred(c.w / 2, y + bh + 24, label, 1);
    let note: &[&str] = match (s.below, s.above) {
        (false, false) => &["colours span the 1st-99th percentiles of the values"],
        _ => &["colours span the 1st-99th percentiles;", "values beyond the arrows are clipped"],
    };
    // one line where it fits, else a line each
    let mut line_y = y + bh + 40;
    if text_width(&note.join(" "), 1) + 8 <= c.w {
        c.text_centred(c.w / 2, line_y, &note.join(" "), 1);
        line_y += 12;
    } else {
        for part in note {
            c.text_centred(c.w / 2, line_y, part, 1);
            line_y += 12;
        }
    }
    // the missing swatch right of the bar, or under the note when the map is narrow
    let right = bx + bw + aw + 16;
    let (sx, sy) =
        if right + bh + 6 + text_width("missing", 1) <= c.w { (right, y) } else { (c.w / 2 - 40, line_y + 4) };
    swatch(c, sx, sy, bh, MISSING, "missing");
}

/// A square of colour `fill` with a label right of it.
fn swatch(c: &mut Canvas, x: usize, y: usize, size: usize, fill: [u8; 3], label: &str) {
    for dx in 0..size {
        (0..size).for_each(|d| c.set(x + dx, y + d, fill));
    }
    outline(c, Rect { x, y, w: size, h: size });
    c.text(x + size + 6, y + (size - 8) / 2, label, 1);
}

/// A 1-pixel outline of a rectangle.
fn outline(c: &mut Canvas, r: Rect) {
    for x in r.x..r.x + r.w {
        c.set(x, r.y, INK);
        c.set(x, r.y + r.h - 1, INK);
    }
    for y in r.y..r.y + r.h {
        c.set(r.x, y, INK);
        c.set(r.x + r.w - 1, y, INK);
    }
}

/// A filled triangle at an end of the colour bar, pointing outwards from x (its base), `len`
/// pixels long, in the colour of that end, outlined.
fn arrow(c: &mut Canvas, x: usize, y: usize, len: usize, h: usize, right: bool) {
    let fill = colour(if right { 1.0 } else { 0.0 });
    let half = (h - 1) as f64 / 2.0;
    for d in 1..=len {
        // the triangle's half-height at distance d from the base
        let hh = half * (1.0 - d as f64 / len as f64);
        let px = if right { x + d } else { x.saturating_sub(d) };
        let (top, bottom) = ((half - hh).round() as usize, (half + hh).round() as usize);
        for dy in top..=bottom {
            let edge = dy == top || dy == bottom;
            c.set(px, y + dy, if edge { INK } else { fill });
        }
    }
}

fn write_png(path: &std::path::Path, c: &Canvas) -> Result<(), CliError> {
    let at = |e: &dyn std::fmt::Display| CliError(format!("{}: {e}", path.display()));
    let file = std::fs::File::create(path).map_err(|e| CliError(format!("cannot create {}: {e}", path.display())))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), c.w as u32, c.h as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(|e| at(&e))?;
    writer.write_image_data(&c.rgb).map_err(|e| at(&e))?;
    writer.finish().map_err(|e| at(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projections_round_trip() {
        let planes =
            [Plane::Mollweide, Plane::Equirect { lon_c: -110.0, k: 0.6 }, Plane::Ortho { lon0: 20.0, lat0: 90.0 }];
        for plane in planes {
            for &(lon, lat) in &[(0.0, 0.0), (120.0, 45.0), (-170.0, -60.0), (30.0, 89.0), (-100.0, 70.0)] {
                let Some((x, y)) = plane.project(lon, lat) else { continue };
                let (l2, p2) = plane.unproject(x, y).unwrap();
                assert!(
                    wrap180(l2 - lon).abs() < 1e-6 && (p2 - lat).abs() < 1e-6,
                    "{plane:?}: {lon} {lat} → {l2} {p2}"
                );
            }
        }
        assert!(Plane::Mollweide.unproject(2.8, 1.4).is_none());
        assert!(Plane::Ortho { lon0: 0.0, lat0: 90.0 }.project(0.0, -10.0).is_none());
    }

    #[test]
    fn colours_and_ranges() {
        assert_eq!(colour(0.0), [40, 20, 90]);
        assert_eq!(colour(1.0), [170, 25, 30]);
        assert_eq!(ColourScale::of(vec![]).range, None);
        assert_eq!(ColourScale::of(vec![3.0, 3.0]).range, Some((2.5, 3.5)));
        let mut v: Vec<f64> = (0..1000).map(f64::from).collect();
        v.push(1e6);
        let s = ColourScale::of(v);
        assert!(s.below && s.above, "the lowest and highest values lie beyond the percentiles");
    }

    #[test]
    fn ticks_are_nice() {
        let (t, step) = nice_ticks(-1.8, 31.2);
        assert_eq!(t, vec![0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0]);
        assert_eq!(tick_label(t[1], step), "5");
        for (lo, hi) in [(0.0, 1.0), (-3.7, 2.2), (271.3, 305.9), (1e-5, 3.3e-5), (0.12, 0.13), (-1e7, 3e7)] {
            let (t, step) = nice_ticks(lo, hi);
            assert!((4..=8).contains(&t.len()), "{lo}..{hi}: {t:?}");
            assert!(t.iter().all(|&x| x >= lo - 1e-12 && x <= hi + 1e-12));
            let m = step / 10f64.powf(step.log10().floor());
            assert!([1.0, 2.0, 2.5, 5.0].iter().any(|&n| (m - n).abs() < 1e-9), "{step}");
        }
        assert_eq!(tick_label(2.5, 2.5), "2.5");
        assert_eq!(tick_label(0.25, 0.25), "0.25");
        assert_eq!(tick_label(-0.0000001, 0.5), "0.0");
    }

    /// Positions of a regular grid: lon from `w0` eastwards over `nx` steps of `dx`, lat from `s0`.
    fn grid_points(w0: f64, dx: f64, nx: usize, s0: f64, dy: f64, ny: usize) -> (Vec<f64>, Vec<f64>) {
        let mut lon = Vec::new();
        let mut lat = Vec::new();
        for j in 0..ny {
            for i in 0..nx {
                lon.push(wrap180(w0 + dx * i as f64));
                lat.push(s0 + dy * j as f64);
            }
        }
        (lon, lat)
    }

    #[test]
    fn global_data_get_the_globe() {
        let (lon, lat) = grid_points(-179.5, 1.0, 360, -89.5, 1.0, 180);
        assert_eq!(choose_view(Projection::Auto, &lon, &lat), View::mollweide());
        let (lon, lat) = grid_points(-180.0, 5.0, 72, -78.0, 5.0, 34);
        assert_eq!(choose_view(Projection::Auto, &lon, &lat), View::mollweide());
    }

    #[test]
    fn regional_data_get_a_box_around_them() {
        // North America, 170°W–50°W, 10°N–75°N
        let (lon, lat) = grid_points(-170.0, 1.25, 97, 10.0, 0.8333, 79);
        let v = choose_view(Projection::Auto, &lon, &lat);
        let Plane::Equirect { lon_c, k } = v.plane else { panic!("{v:?}") };
        assert!((lon_c + 110.0).abs() < 1.0, "{v:?}");
        let (west, east) = (lon_c + v.x0 / k, lon_c + v.x1 / k);
        assert!(west < -170.0 && west > -185.0 && east > -50.0 && east < -35.0, "{west} {east}");
        assert!(v.y0 < 10.0 && v.y0 > 0.0 && v.y1 > 74.0 && v.y1 <= 90.0, "{v:?}");
        assert!((0.35..=1.2).contains(&v.aspect()));
    }

    #[test]
    fn data_across_the_antimeridian_get_a_box_across_it() {
        // 160°E to 150°W across 180°, 40°S to 10°S
        let (lon, lat) = grid_points(160.0, 0.5, 101, -40.0, 0.5, 61);
        let v = choose_view(Projection::Auto, &lon, &lat);
        let Plane::Equirect { lon_c, k } = v.plane else { panic!("{v:?}") };
        assert!((wrap180(lon_c - 185.0)).abs() < 1.0, "centred near 175°W: {v:?}");
        assert!((v.x1 - v.x0) / k < 70.0, "not the whole globe: {v:?}");
        for (&x, &y) in lon.iter().zip(&lat) {
            let (px, py) = v.plane.project(x, y).unwrap();
            assert!(px > v.x0 && px < v.x1 && py > v.y0 && py < v.y1);
        }
    }

    #[test]
    fn polar_data_get_a_polar_view() {
        let (lon, lat) = grid_points(-180.0, 2.0, 180, 62.0, 1.0, 28);
        let v = choose_view(Projection::Auto, &lon, &lat);
        assert_eq!(v.plane, Plane::Ortho { lon0: 0.0, lat0: 90.0 });
        // the cap's edge at 62°N lies at cos 62° ≈ 0.47 from the pole: a window just around it
        assert!(v.x1 < 0.6 && v.x0 > -0.6 && v.y1 < 0.6 && v.y0 > -0.6, "{v:?}");
        let (lon, lat) = grid_points(-180.0, 2.0, 180, -89.0, 1.0, 25);
        assert_eq!(choose_view(Projection::Auto, &lon, &lat).plane, Plane::Ortho { lon0: 0.0, lat0: -90.0 });
    }

    #[test]
    fn explicit_projections_keep_the_globe() {
        let (lon, lat) = grid_points(-170.0, 1.25, 97, 10.0, 0.8333, 79);
        assert_eq!(choose_view(Projection::Lonlat, &lon, &lat), View::lonlat());
        assert_eq!(choose_view(Projection::Mollweide, &lon, &lat), View::mollweide());
    }

    /// Pixels of a view inside [west, east] × [south, north] (shrunk by `inset` degrees) whose
    /// filled value is missing.
    fn missing_inside(view: &View, fill: &[f64], w: usize, h: usize, bounds: [f64; 4], inset: f64) -> usize {
        let [west, east, south, north] = bounds;
        let positions = view.pixel_positions(w, h);
        positions
            .iter()
            .zip(fill)
            .filter(|(p, v)| {
                p.is_some_and(|(x, y)| x > west + inset && x < east - inset && y > south + inset && y < north - inset)
                    && v.is_nan()
            })
            .count()
    }

    #[test]
    fn nearest_fill_has_no_gaps_on_a_regular_grid() {
        let (lon, lat) = grid_points(-179.5, 1.0, 360, -89.5, 1.0, 180);
        let values: Vec<f64> = lat.iter().map(|y| y.to_radians().sin()).collect();
        let index = SampleIndex::new(&MapPoints { lon: &lon, lat: &lat, values: &values }).unwrap();
        for view in [View::mollweide(), View::lonlat()] {
            let (w, h) = (1000, 500);
            let fill = index.fill(&view.pixel_positions(w, h), w);
            assert_eq!(missing_inside(&view, &fill, w, h, [-180.0, 180.0, -90.0, 90.0], 0.0), 0, "{view:?}");
        }
        // a regional 1.25° × 0.83° grid drawn in its own view
        let (lon, lat) = grid_points(-170.0, 1.25, 97, 10.0, 0.8333, 79);
        let values = vec![1.0; lon.len()];
        let view = choose_view(Projection::Auto, &lon, &lat);
        let index = SampleIndex::new(&MapPoints { lon: &lon, lat: &lat, values: &values }).unwrap();
        let (w, h) = (1000, (1000.0 * view.aspect()) as usize);
        let fill = index.fill(&view.pixel_positions(w, h), w);
        assert_eq!(missing_inside(&view, &fill, w, h, [-170.0, -50.0, 10.0, 74.8], 0.0), 0);
        // and beyond the grid's edge by more than its spacing, nothing
        let positions = view.pixel_positions(w, h);
        let outside = positions.iter().zip(&fill).filter(|(p, v)| p.is_some_and(|(_, y)| y < 8.0) && !v.is_nan());
        assert_eq!(outside.count(), 0);
    }

    #[test]
    fn nearest_fill_keeps_real_holes() {
        // a 1° grid with a 10° × 10° hole without samples, and a 10° × 10° block of missing values
        let (lon, lat) = grid_points(-179.5, 1.0, 360, -89.5, 1.0, 180);
        let inside = |x: f64, y: f64, w: f64, s: f64| x > w && x < w + 10.0 && y > s && y < s + 10.0;
        let (mut l2, mut p2, mut v2) = (Vec::new(), Vec::new(), Vec::new());
        for (&x, &y) in lon.iter().zip(&lat) {
            if inside(x, y, 0.0, 0.0) {
                continue;
            }
            l2.push(x);
            p2.push(y);
            v2.push(if inside(x, y, 40.0, 20.0) { f64::NAN } else { 1.0 });
        }
        let index = SampleIndex::new(&MapPoints { lon: &l2, lat: &p2, values: &v2 }).unwrap();
        let view = View::lonlat();
        let (w, h) = (1000, 500);
        let positions = view.pixel_positions(w, h);
        let fill = index.fill(&positions, w);
        let hole = |w0: f64, s0: f64| {
            positions
                .iter()
                .zip(&fill)
                .filter(|(p, _)| p.is_some_and(|(x, y)| inside(x, y, w0 + 1.5, s0 + 1.5) && inside(x, y, w0, s0)))
                .filter(|(p, _)| p.is_some_and(|(x, y)| x < w0 + 8.5 && y < s0 + 8.5))
                .map(|(_, v)| v.is_nan())
                .collect::<Vec<_>>()
        };
        for (w0, s0) in [(0.0, 0.0), (40.0, 20.0)] {
            let h = hole(w0, s0);
            assert!(!h.is_empty() && h.iter().all(|&m| m), "hole at {w0} {s0}");
        }
        assert_eq!(missing_inside(&view, &fill, w, h, [-180.0, -10.0, -90.0, 90.0], 0.0), 0);
    }

    /// Draws a level-3 field beside a 5° input grid into the temporary directory; the PNG's path.
    fn draw_sample(name: &str, projection: Projection, row_label: &str) -> std::path::PathBuf {
        let grid = Grid::new(3, true, Ellipsoid::Wgs84).unwrap();
        let ids: Vec<u64> = (0..grid.n_cells()).collect();
        let values: Vec<f64> = ids.iter().map(|&c| grid.center(c).unwrap().1.to_radians().cos() * 30.0).collect();
        let (lon, lat) = grid_points(-177.5, 5.0, 72, -87.5, 5.0, 36);
        let input: Vec<f64> = lat
            .iter()
            .zip(&lon)
            .map(|(y, x)| if x.abs() < 20.0 { f64::NAN } else { y.to_radians().cos() * 30.0 })
            .collect();
        let path = std::env::temp_dir().join(format!("healpix-psf-render-{}-{name}.png", std::process::id()));
        draw(&MapRequest {
            path: &path,
            var: "tos",
            units: "degC",
            row_label,
            grid: &grid,
            cell_ids: &ids,
            cell_values: &values,
            input: Some(MapPoints { lon: &lon, lat: &lat, values: &input }),
            projection,
            width: 400,
        })
        .unwrap();
        path
    }

    #[test]
    fn draw_writes_a_png_of_two_panels() {
        for (name, projection) in [("auto", Projection::Auto), ("ortho", Projection::Orthographic)] {
            let path = draw_sample(name, projection, "time = 3 of 12");
            let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
            let info = decoder.read_info().unwrap().info().clone();
            assert!(info.width > 800 && info.height > 200, "{}x{}", info.width, info.height);
            std::fs::remove_file(&path).unwrap();
        }
    }

    #[test]
    fn segments_are_clipped_to_the_panel() {
        assert_eq!(clip((-10.0, 5.0), (20.0, 5.0), 10.0, 10.0), Some(((0.0, 5.0), (10.0, 5.0))));
        assert_eq!(clip((-10.0, -5.0), (-1.0, -5.0), 10.0, 10.0), None);
    }

    #[test]
    fn edge_texts() {
        assert_eq!(lon_text(-120.0), "120W");
        assert_eq!(lon_text(180.0), "180");
        assert_eq!(lon_text(60.0), "60E");
        assert_eq!(lat_text(-30.0), "30S");
        assert_eq!(lat_text(0.0), "0");
    }
}
