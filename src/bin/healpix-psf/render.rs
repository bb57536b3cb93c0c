//! PNG maps: the HEALPix cells drawn on a longitude/latitude (plate carrée) or Mollweide map with a
//! colour bar, optionally beside the input samples on the same projection and colour scale.
//!
//! Every pixel of a cell panel shows the value of the HEALPix cell its centre falls in (so cells keep
//! their true shapes); grey is missing, white is off the globe.

use crate::CliError;
use healpix_psf::geometry::Grid;
use std::f64::consts::{PI, SQRT_2};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Projection {
    /// The whole globe for global data, a view around regional data.
    Auto,
    /// Longitude/latitude (plate carrée), 2:1.
    Lonlat,
    /// Mollweide (equal-area), 2:1 ellipse.
    Mollweide,
}

impl Projection {
    /// Pixel centre (x, y) of a w×h panel → (lon, lat) in degrees, or None off the globe.
    fn inverse(self, x: f64, y: f64, w: f64, h: f64) -> Option<(f64, f64)> {
        match self {
            Projection::Lonlat | Projection::Auto => Some((-180.0 + x / w * 360.0, 90.0 - y / h * 180.0)),
            Projection::Mollweide => {
                let (px, py) = ((x / w * 2.0 - 1.0) * 2.0 * SQRT_2, (1.0 - y / h * 2.0) * SQRT_2);
                if px * px / 8.0 + py * py / 2.0 > 1.0 {
                    return None;
                }
                let t = (py / SQRT_2).clamp(-1.0, 1.0).asin();
                let lat = ((2.0 * t + (2.0 * t).sin()) / PI).clamp(-1.0, 1.0).asin();
                let c = t.cos();
                let lon = if c > 1e-12 { PI * px / (2.0 * SQRT_2 * c) } else { 0.0 };
                (lon.abs() <= PI).then(|| (lon.to_degrees(), lat.to_degrees()))
            }
        }
    }

    /// (lon, lat) in degrees → pixel coordinates in a w×h panel.
    fn forward(self, lon: f64, lat: f64, w: f64, h: f64) -> (f64, f64) {
        let lon = (lon + 180.0).rem_euclid(360.0) - 180.0;
        match self {
            Projection::Lonlat | Projection::Auto => ((lon + 180.0) / 360.0 * w, (90.0 - lat) / 180.0 * h),
            Projection::Mollweide => {
                let phi = lat.to_radians();
                // 2θ + sin 2θ = π sin φ, by Newton's method
                let mut t = phi;
                for _ in 0..30 {
                    let f = 2.0 * t + (2.0 * t).sin() - PI * phi.sin();
                    let d = 2.0 + 2.0 * (2.0 * t).cos();
                    if d.abs() < 1e-12 {
                        break;
                    }
                    t -= f / d;
                }
                let px = 2.0 * SQRT_2 / PI * lon.to_radians() * t.cos();
                let py = SQRT_2 * t.sin();
                ((px / (2.0 * SQRT_2) + 1.0) / 2.0 * w, (1.0 - py / SQRT_2) / 2.0 * h)
            }
        }
    }
}

/// What a panel shows.
pub enum Panel<'a> {
    /// HEALPix cells: ids ascending in `grid`'s scheme, one value each.
    Cells { grid: &'a Grid, ids: &'a [u64], values: &'a [f64], label: String },
    /// Samples drawn as dots.
    Points { lon: &'a [f64], lat: &'a [f64], values: &'a [f64], label: String },
}

struct Canvas {
    w: usize,
    h: usize,
    rgb: Vec<u8>,
}

const WHITE: [u8; 3] = [255, 255, 255];
const MISSING: [u8; 3] = [205, 205, 205];
const INK: [u8; 3] = [25, 25, 25];

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
    /// ASCII text with its top-left corner at (x, y), glyphs 8×8 scaled by `scale`.
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
}

fn text_width(s: &str, scale: usize) -> usize {
    s.chars().count() * 8 * scale
}

/// The colour scale: own control points from deep blue through cyan and yellow to dark red.
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

/// The colour range: the 1st and 99th percentiles of the finite values (so that a few outliers do
/// not wash the map out), widened when they coincide.
pub fn value_range(values: &[f64]) -> Option<(f64, f64)> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    let (lo, hi) = (at(0.01), at(0.99));
    Some(if hi > lo { (lo, hi) } else { (lo - 0.5, lo + 0.5) })
}

/// A label for a tick value with a precision suited to the range.
fn tick_label(v: f64, span: f64) -> String {
    let digits = if span >= 50.0 {
        0
    } else if span >= 5.0 {
        1
    } else {
        (2.0 - span.log10().floor()).clamp(2.0, 8.0) as usize
    };
    if v != 0.0 && (v.abs() >= 1e6 || v.abs() < 1e-4) {
        format!("{v:.2e}")
    } else {
        format!("{v:.digits$}")
    }
}

/// Draws the panels side by side, a title and a colour bar, and writes the PNG.
pub fn render(
    path: &str,
    panels: &[Panel<'_>],
    title: &str,
    range: (f64, f64),
    projection: Projection,
    panel_width: usize,
) -> Result<(), CliError> {
    let (pw, ph) = (panel_width.max(200), panel_width.max(200) / 2);
    let (margin, gap, top, bottom) = (20usize, 30usize, 56usize, 90usize);
    let w = 2 * margin + panels.len() * pw + (panels.len().saturating_sub(1)) * gap;
    let h = top + ph + bottom;
    let mut c = Canvas::new(w, h);
    let (lo, hi) = range;
    let scaled = |v: f64| colour((v - lo) / (hi - lo));
    c.text((w.saturating_sub(text_width(title, 2))) / 2, 10, title, 2);

    for (p, panel) in panels.iter().enumerate() {
        let x0 = margin + p * (pw + gap);
        let y0 = top;
        let label = match panel {
            Panel::Cells { label, .. } | Panel::Points { label, .. } => label,
        };
        c.text(x0 + pw.saturating_sub(text_width(label, 1)) / 2, top - 14, label, 1);
        // background: the globe missing-grey, off the globe white
        for y in 0..ph {
            for x in 0..pw {
                let on = projection.inverse(x as f64 + 0.5, y as f64 + 0.5, pw as f64, ph as f64);
                let colour = match (on, panel) {
                    (None, _) => WHITE,
                    (Some((lon, lat)), Panel::Cells { grid, ids, values, .. }) => grid
                        .cell(lon, lat)
                        .ok()
                        .and_then(|id| ids.binary_search(&id).ok())
                        .map(|k| values[k])
                        .filter(|v| v.is_finite())
                        .map_or(MISSING, scaled),
                    (Some(_), Panel::Points { .. }) => MISSING,
                };
                c.set(x0 + x, y0 + y, colour);
            }
        }
        if let Panel::Points { lon, lat, values, .. } = panel {
            // dots about as wide as the samples are apart on the map
            let valid = values.iter().filter(|v| v.is_finite()).count().max(1);
            let dot = ((pw * ph) as f64 * 1.5 / valid as f64).sqrt().clamp(1.0, 6.0).round() as usize;
            for ((&x, &y), &v) in lon.iter().zip(lat.iter()).zip(values.iter()) {
                if !(v.is_finite() && x.is_finite() && y.is_finite()) {
                    continue;
                }
                let (px, py) = projection.forward(x, y, pw as f64, ph as f64);
                let (px, py) = (px - dot as f64 / 2.0, py - dot as f64 / 2.0);
                for dy in 0..dot {
                    for dx in 0..dot {
                        let (qx, qy) = (px + dx as f64, py + dy as f64);
                        if qx >= 0.0 && qy >= 0.0 && (qx as usize) < pw && (qy as usize) < ph {
                            c.set(x0 + qx as usize, y0 + qy as usize, scaled(v));
                        }
                    }
                }
            }
        }
        // graticule every 30°
        let mut line = |lon: f64, lat: f64| {
            let (px, py) = projection.forward(lon, lat, pw as f64, ph as f64);
            if px >= 0.0 && py >= 0.0 && (px as usize) < pw && (py as usize) < ph {
                c.blend(x0 + px as usize, y0 + py as usize, INK, 0.35);
            }
        };
        let steps = 4 * pw;
        for k in -6i32..=6 {
            for s in 0..=steps {
                let t = s as f64 / steps as f64;
                line(k as f64 * 30.0 - if k == 6 { 1e-9 } else { 0.0 }, -90.0 + 180.0 * t);
                if k.abs() <= 2 {
                    line(-180.0 + 360.0 * t, k as f64 * 30.0);
                }
            }
        }
    }

    // colour bar with five labelled ticks
    let (bw, bh) = ((w * 3 / 5).max(200), 16usize);
    let (bx, by) = ((w - bw) / 2, top + ph + 24);
    for x in 0..bw {
        let col = colour(x as f64 / (bw - 1) as f64);
        for y in 0..bh {
            c.set(bx + x, by + y, col);
        }
    }
    for t in 0..5 {
        let f = t as f64 / 4.0;
        let x = bx + ((bw - 1) as f64 * f) as usize;
        for y in by + bh..by + bh + 5 {
            c.set(x, y, INK);
        }
        let label = tick_label(lo + (hi - lo) * f, hi - lo);
        let lw = text_width(&label, 1);
        c.text(x.saturating_sub(lw / 2).min(w - lw), by + bh + 8, &label, 1);
    }

    let file = std::fs::File::create(path).map_err(|e| CliError(format!("cannot create {path}: {e}")))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w as u32, h as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(|e| CliError(format!("{path}: {e}")))?;
    writer.write_image_data(&c.rgb).map_err(|e| CliError(format!("{path}: {e}")))?;
    writer.finish().map_err(|e| CliError(format!("{path}: {e}")))
}

/// One row of the input: N samples (NaN = missing).
pub struct MapPoints<'a> {
    pub lon: &'a [f64],
    pub lat: &'a [f64],
    pub values: &'a [f64],
}

/// A map to draw (interim: the new renderer replaces this).
#[allow(dead_code)]
pub struct MapRequest<'a> {
    pub path: &'a std::path::Path,
    pub var: &'a str,
    pub units: &'a str,
    pub row_label: &'a str,
    pub grid: &'a Grid,
    pub cell_ids: &'a [u64],
    pub cell_values: &'a [f64],
    pub input: Option<MapPoints<'a>>,
    pub projection: Projection,
    pub width: usize,
}

pub fn draw(r: &MapRequest<'_>) -> Result<(), CliError> {
    let range = value_range(r.cell_values).ok_or_else(|| CliError("no value to draw".into()))?;
    let mut panels = Vec::new();
    if let Some(p) = &r.input {
        panels.push(Panel::Points { lon: p.lon, lat: p.lat, values: p.values, label: "input".into() });
    }
    panels.push(Panel::Cells { grid: r.grid, ids: r.cell_ids, values: r.cell_values, label: "cells".into() });
    let proj = if r.projection == Projection::Auto { Projection::Mollweide } else { r.projection };
    render(&r.path.to_string_lossy(), &panels, r.var, range, proj, r.width)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mollweide_round_trip() {
        for &(lon, lat) in &[(0.0, 0.0), (120.0, 45.0), (-170.0, -60.0), (30.0, 89.0)] {
            let (x, y) = Projection::Mollweide.forward(lon, lat, 800.0, 400.0);
            let (l2, p2) = Projection::Mollweide.inverse(x, y, 800.0, 400.0).unwrap();
            assert!((l2 - lon).abs() < 1e-6 && (p2 - lat).abs() < 1e-6, "{lon} {lat} → {l2} {p2}");
        }
        assert!(Projection::Mollweide.inverse(1.0, 1.0, 800.0, 400.0).is_none());
    }

    #[test]
    fn colours_and_ranges() {
        assert_eq!(colour(0.0), [40, 20, 90]);
        assert_eq!(colour(1.0), [170, 25, 30]);
        assert_eq!(value_range(&[f64::NAN]), None);
        assert_eq!(value_range(&[3.0, 3.0]), Some((2.5, 3.5)));
        assert_eq!(tick_label(12.345, 30.0), "12.3");
    }
}
