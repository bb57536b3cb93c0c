//! Coastlines for the PNG maps, from the Natural Earth 1:110m admin-0 countries (public domain).
//!
//! The shapefile is not in the repository: `scripts/natural-earth.sh` fetches it from a package
//! registry and build.rs copies it to `OUT_DIR/coast.shp` (an empty file when it is absent, and the
//! maps have no coastlines). It holds country polygons; a coastline is the part of their outlines
//! that is not a border between two countries. In this dataset neighbouring countries share their
//! border vertices exactly, so an edge drawn twice is a border and an edge drawn once is coast.

use std::collections::HashMap;
use std::sync::OnceLock;

/// A lon/lat vertex in degrees.
pub type LonLat = (f64, f64);

/// The embedded shapefile (empty when the build found none).
static SHAPEFILE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/coast.shp"));

/// The coastlines as lon/lat polylines, parsed once; empty without data or on a damaged file (the
/// maps are then drawn without them rather than not at all).
pub fn coastlines() -> &'static [Vec<LonLat>] {
    static LINES: OnceLock<Vec<Vec<LonLat>>> = OnceLock::new();
    LINES.get_or_init(|| parse_polygons(SHAPEFILE).map(|rings| coast_edges(&rings)).unwrap_or_default())
}

/// Shapefile constants (ESRI Shapefile Technical Description, 1998).
const FILE_CODE: i32 = 9994;
const HEADER_LEN: usize = 100;
const RECORD_HEADER_LEN: usize = 8;
const NULL_SHAPE: i32 = 0;
const POLYGON: i32 = 5;

/// A bounds-checked reader over a byte slice: every read says where it failed instead of panicking.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&self, at: usize, len: usize) -> Result<&'a [u8], String> {
        at.checked_add(len)
            .and_then(|end| self.bytes.get(at..end))
            .ok_or_else(|| format!("shapefile truncated: {len} bytes wanted at offset {at} of {}", self.bytes.len()))
    }
    fn i32_be(&self, at: usize) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.take(at, 4)?.try_into().expect("4 bytes")))
    }
    fn i32_le(&self, at: usize) -> Result<i32, String> {
        Ok(i32::from_le_bytes(self.take(at, 4)?.try_into().expect("4 bytes")))
    }
    fn f64_le(&self, at: usize) -> Result<f64, String> {
        Ok(f64::from_le_bytes(self.take(at, 8)?.try_into().expect("8 bytes")))
    }
    /// A count stored as a little-endian i32: non-negative and at most `max`.
    fn count_le(&self, at: usize, max: usize, what: &str) -> Result<usize, String> {
        let n = self.i32_le(at)?;
        usize::try_from(n).ok().filter(|&n| n <= max).ok_or_else(|| format!("shapefile: bad {what} {n} at offset {at}"))
    }
}

/// The rings (closed outlines, lon/lat) of every polygon record of a shapefile. An empty input is
/// no data (no rings); anything else must be a polygon shapefile whose records all fit in it.
pub fn parse_polygons(bytes: &[u8]) -> Result<Vec<Vec<LonLat>>, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let r = Reader { bytes };
    if r.i32_be(0)? != FILE_CODE {
        return Err("not a shapefile (file code is not 9994)".into());
    }
    let shape_type = r.i32_le(32)?;
    if shape_type != POLYGON {
        return Err(format!("shapefile of shape type {shape_type}, not polygons (5)"));
    }
    // the file length is in 16-bit words; trust it only as far as the bytes go
    let declared = usize::try_from(r.i32_be(24)?).unwrap_or(0).saturating_mul(2);
    let end = declared.min(bytes.len());
    let mut rings = Vec::new();
    let mut at = HEADER_LEN;
    while at + RECORD_HEADER_LEN <= end {
        let words = usize::try_from(r.i32_be(at + 4)?).map_err(|_| format!("shapefile: bad record length at {at}"))?;
        let content = at + RECORD_HEADER_LEN;
        let len = words.checked_mul(2).ok_or("shapefile: record length overflows")?;
        let record = Reader { bytes: r.take(content, len)? };
        rings.extend(polygon_record(&record)?);
        at = content + len;
    }
    Ok(rings)
}

/// The rings of one record's content (none for a null shape).
fn polygon_record(r: &Reader<'_>) -> Result<Vec<Vec<LonLat>>, String> {
    let shape_type = r.i32_le(0)?;
    if shape_type == NULL_SHAPE {
        return Ok(Vec::new());
    }
    if shape_type != POLYGON {
        return Err(format!("shapefile record of shape type {shape_type} in a polygon file"));
    }
    // type (4), bounding box (32), numParts (4), numPoints (4), parts, points
    let n_parts = r.count_le(36, r.bytes.len() / 4, "number of parts")?;
    let n_points = r.count_le(40, r.bytes.len() / 16, "number of points")?;
    let parts_at = 44;
    let points_at = parts_at + 4 * n_parts;
    r.take(points_at, 16 * n_points)?;
    let mut starts = Vec::with_capacity(n_parts + 1);
    for p in 0..n_parts {
        starts.push(r.count_le(parts_at + 4 * p, n_points, "part start")?);
    }
    starts.push(n_points);
    if starts.windows(2).any(|w| w[0] > w[1]) {
        return Err("shapefile: part starts are not ascending".into());
    }
    let point =
        |i: usize| -> Result<LonLat, String> { Ok((r.f64_le(points_at + 16 * i)?, r.f64_le(points_at + 16 * i + 8)?)) };
    starts.windows(2).map(|w| (w[0]..w[1]).map(point).collect::<Result<Vec<_>, _>>()).collect()
}

/// An undirected edge with exact coordinates, as a hashable key (vertex bit patterns, ordered).
type EdgeKey = [u64; 4];

fn edge_key(a: LonLat, b: LonLat) -> EdgeKey {
    let (p, q) = ([a.0.to_bits(), a.1.to_bits()], [b.0.to_bits(), b.1.to_bits()]);
    let (p, q) = if p <= q { (p, q) } else { (q, p) };
    [p[0], p[1], q[0], q[1]]
}

/// True for the edges that outline the map rather than the land: polygons cut along the
/// antimeridian, or closed along the pole line (Antarctica).
fn is_artificial(a: LonLat, b: LonLat) -> bool {
    let on_antimeridian = |p: LonLat| (p.0.abs() - 180.0).abs() < 1e-6;
    let on_south_pole = |p: LonLat| p.1 <= -90.0 + 1e-6;
    (on_antimeridian(a) && on_antimeridian(b)) || (on_south_pole(a) && on_south_pole(b))
}

/// The coastline of a set of polygon rings: the edges that belong to one ring only (an edge two
/// countries share is a border), without degenerate or artificial edges, joined back into
/// polylines in each ring's order.
pub fn coast_edges(rings: &[Vec<LonLat>]) -> Vec<Vec<LonLat>> {
    let edges = |ring: &'_ [LonLat]| ring.windows(2).map(|w| (w[0], w[1])).collect::<Vec<_>>();
    let mut seen: HashMap<EdgeKey, u32> = HashMap::new();
    for ring in rings {
        for (a, b) in edges(ring) {
            if a != b {
                *seen.entry(edge_key(a, b)).or_default() += 1;
            }
        }
    }
    let mut lines = Vec::new();
    for ring in rings {
        let keep = |(a, b): (LonLat, LonLat)| a != b && !is_artificial(a, b) && seen[&edge_key(a, b)] == 1;
        let mut ring_lines: Vec<Vec<LonLat>> = Vec::new();
        let mut open = false; // whether the previous edge was kept (its polyline goes on)
        for (a, b) in edges(ring) {
            if !keep((a, b)) {
                open = false;
                continue;
            }
            match ring_lines.last_mut() {
                Some(line) if open => line.push(b),
                _ => ring_lines.push(vec![a, b]),
            }
            open = true;
        }
        // a closed ring whose first and last edges are both coast: one polyline, not two
        let closed = ring.len() > 2 && ring.first() == ring.last();
        if closed && ring_lines.len() > 1 && ring_lines[0][0] == ring[0] && open {
            let first = ring_lines.remove(0);
            ring_lines.last_mut().expect("more than one").extend_from_slice(&first[1..]);
        }
        lines.extend(ring_lines);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A polygon shapefile of the given records (each a list of rings), built by hand.
    fn shapefile(records: &[Vec<Vec<LonLat>>]) -> Vec<u8> {
        let mut body = Vec::new();
        for (k, rings) in records.iter().enumerate() {
            let mut c = Vec::new();
            c.extend(POLYGON.to_le_bytes());
            c.extend([0u8; 32]); // bounding box, unused
            let n_points: usize = rings.iter().map(Vec::len).sum();
            c.extend((rings.len() as i32).to_le_bytes());
            c.extend((n_points as i32).to_le_bytes());
            let mut start = 0;
            for ring in rings {
                c.extend((start as i32).to_le_bytes());
                start += ring.len();
            }
            for &(x, y) in rings.iter().flatten() {
                c.extend(x.to_le_bytes());
                c.extend(y.to_le_bytes());
            }
            body.extend((k as i32 + 1).to_be_bytes());
            body.extend((c.len() as i32 / 2).to_be_bytes());
            body.extend(c);
        }
        let mut head = vec![0u8; HEADER_LEN];
        head[0..4].copy_from_slice(&FILE_CODE.to_be_bytes());
        head[24..28].copy_from_slice((((HEADER_LEN + body.len()) / 2) as i32).to_be_bytes().as_slice());
        head[28..32].copy_from_slice(&1000i32.to_le_bytes());
        head[32..36].copy_from_slice(&POLYGON.to_le_bytes());
        head.extend(body);
        head
    }

    fn square(x: f64, y: f64) -> Vec<LonLat> {
        vec![(x, y), (x, y + 1.0), (x + 1.0, y + 1.0), (x + 1.0, y), (x, y)]
    }

    #[test]
    fn parses_a_hand_built_polygon_file() {
        let bytes = shapefile(&[vec![square(0.0, 0.0)], vec![square(5.0, 5.0), square(7.0, 7.0)]]);
        let rings = parse_polygons(&bytes).unwrap();
        assert_eq!(rings.len(), 3);
        assert_eq!(rings[0], square(0.0, 0.0));
        assert_eq!(rings[2], square(7.0, 7.0));
        assert!(parse_polygons(&[]).unwrap().is_empty());
    }

    #[test]
    fn damaged_files_give_errors_not_panics() {
        let bytes = shapefile(&[vec![square(0.0, 0.0)], vec![square(5.0, 5.0)]]);
        for cut in 0..bytes.len() {
            // a truncated file: an error, or the records that fit (file length beyond the bytes)
            let _ = parse_polygons(&bytes[..cut]);
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut damaged = bytes.clone();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let i = (state % damaged.len() as u64) as usize;
                damaged[i] = (state >> 32) as u8;
            }
            let _ = parse_polygons(&damaged);
        }
        assert!(parse_polygons(b"garbage that is not a shapefile at all").is_err());
        let mut huge_parts = bytes.clone();
        huge_parts[HEADER_LEN + 8 + 36..HEADER_LEN + 8 + 40].copy_from_slice(&i32::MAX.to_le_bytes());
        assert!(parse_polygons(&huge_parts).is_err());
    }

    #[test]
    fn shared_edges_are_borders_not_coast() {
        // two unit squares side by side share the edge x = 1, 0 ≤ y ≤ 1 (in opposite directions)
        let left = square(0.0, 0.0);
        let right = square(1.0, 0.0);
        let lines = coast_edges(&[left, right]);
        let edges: Vec<EdgeKey> =
            lines.iter().flat_map(|l| l.windows(2).map(|w| edge_key(w[0], w[1])).collect::<Vec<_>>()).collect();
        assert_eq!(edges.len(), 6, "{lines:?}");
        assert!(!edges.contains(&edge_key((1.0, 0.0), (1.0, 1.0))));
        // each square's coast is one polyline of three edges (the ring's wrap joined)
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.len() == 4), "{lines:?}");
    }

    #[test]
    fn the_embedded_coastlines_parse() {
        // built without the data (no scripts/natural-earth.sh): no coastlines, and no error
        let rings = parse_polygons(SHAPEFILE).unwrap();
        if !SHAPEFILE.is_empty() {
            let lines = coastlines();
            let edges: usize = lines.iter().map(|l| l.len() - 1).sum();
            let all: usize = rings.iter().map(|r| r.len().saturating_sub(1)).sum();
            assert!(lines.len() > 100 && edges < all, "{} lines, {edges} of {all} edges", lines.len());
        }
    }

    #[test]
    fn antimeridian_cuts_are_not_coast() {
        let ring = vec![(170.0, 0.0), (180.0, 0.0), (180.0, 10.0), (170.0, 10.0), (170.0, 0.0)];
        let lines = coast_edges(&[ring]);
        assert_eq!(lines, vec![vec![(180.0, 10.0), (170.0, 10.0), (170.0, 0.0), (180.0, 0.0)]]);
    }
}
