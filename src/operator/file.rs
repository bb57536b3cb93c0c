//! Saving a built operator and loading it again: a versioned binary format.
//!
//! A file holds what the construction decided — the parameters, the cells, each sample's links and
//! distances, the areas, the sample order, the restricted-output cells and the build's counts —
//! and not the weights: loading validates the links as [`PsfResampler::from_links`] does and
//! assembles the weights with the same code as a construction, so a loaded CPU operator equals the
//! saved one bit for bit (its `M`, `MT`, `Dx`, fits and resamples). At N = 10⁶ (f32, npt 9, 2 cores;
//! benches/RESULTS.md) the file holds 85 bytes per sample (the operator 209 in memory), saving takes
//! 0.19 s and loading 0.26 s against 1.34 s for the construction. An operator loaded onto a GPU gets
//! its weights from the CPU's code (equal to the GPU's by design, issue 16).
//!
//! ```text
//! offset  size  field (little-endian)
//! 0       8     magic "HPSF-OP\n"
//! 8       4     format version (FORMAT_VERSION)
//! 12      4     bytes per float of the operator: 4 (f32) or 8 (f64)
//! 16      8     payload length P
//! 24      P     payload: the parameters, counts, then arrays (each a u64 length and its values)
//! 24+P    4     CRC-32 (IEEE) of bytes 0 .. 24+P
//! ```
//! A file of another version, another float type, a damaged or truncated file, or values that do
//! not make an operator are refused with [`Error::BadOperatorFile`] before anything is built.

use super::{assemble, check_links, validate_area, BuildInfo, Config, Params, PsfResampler};
use crate::backend::{self, Device};
use crate::error::{Error, Result};
use crate::geometry::{Ellipsoid, Grid};
use crate::parallel::with_threads;
use crate::real::Real;
use std::io::{Read, Write};
use std::path::Path;

const MAGIC: &[u8; 8] = b"HPSF-OP\n";
/// The version of the format this library writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const HEADER: usize = 24;

fn bad(reason: impl Into<String>) -> Error {
    Error::BadOperatorFile(reason.into())
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Io { path: path.display().to_string(), message: e.to_string() }
}

/// The float type of a saved operator from the first 24 bytes of its file: `"f32"` or `"f64"` (for
/// callers that load either precision: Python, C).
///
/// # Examples
/// ```
/// use healpix_psf::{saved_precision, Params, PsfResampler};
/// let op = PsfResampler::<f32>::new(&[8.0, 8.01, 8.02], &[45.0, 45.0, 45.01], &Params::new(9))?;
/// assert_eq!(saved_precision(&op.to_bytes())?, "f32");
/// # Ok::<(), healpix_psf::Error>(())
/// ```
pub fn saved_precision(head: &[u8]) -> Result<&'static str> {
    match header(head)?.1 {
        4 => Ok("f32"),
        _ => Ok("f64"),
    }
}

/// [`saved_precision`] of the operator saved in the file `path` (reads its first 24 bytes).
pub fn saved_file_precision(path: impl AsRef<Path>) -> Result<&'static str> {
    let path = path.as_ref();
    let mut head = [0u8; HEADER];
    let got = std::fs::File::open(path).and_then(|mut f| read_up_to(&mut f, &mut head)).map_err(|e| io(path, e))?;
    saved_precision(&head[..got]).map_err(|e| naming(path, e))
}

/// `e` naming the file `path` it is about (a damaged file's reason, a failed read).
fn naming(path: &Path, e: Error) -> Error {
    match e {
        Error::BadOperatorFile(m) => Error::BadOperatorFile(format!("{}: {m}", path.display())),
        Error::Io { message, .. } => Error::Io { path: path.display().to_string(), message },
        e => e,
    }
}

/// (version, float bytes, payload length) of a header, checked.
fn header(h: &[u8]) -> Result<(u32, u32, u64)> {
    if h.len() < HEADER || &h[..8] != MAGIC {
        return Err(bad("this is not a healpix-psf operator file (no \"HPSF-OP\" signature at its start)"));
    }
    let word = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().expect("4 bytes"));
    let (version, float) = (word(8), word(12));
    if version != FORMAT_VERSION {
        return Err(bad(format!(
            "format version {version}; this library ({}) reads version {FORMAT_VERSION}: build the operator again \
             (or load it with the library that wrote it)",
            env!("CARGO_PKG_VERSION")
        )));
    }
    if float != 4 && float != 8 {
        return Err(bad(format!("{float} bytes per float (4 or 8 expected): the header is damaged")));
    }
    Ok((version, float, u64::from_le_bytes(h[16..24].try_into().expect("8 bytes"))))
}

/// The payload's writer.
struct Out(Vec<u8>);

impl Out {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }
    fn u32s(&mut self, v: &[u32]) {
        self.len(v.len());
        v.iter().for_each(|&x| self.u32(x));
    }
    fn i32s(&mut self, v: &[i32]) {
        self.len(v.len());
        v.iter().for_each(|&x| self.u32(x as u32));
    }
    fn u64s(&mut self, v: &[u64]) {
        self.len(v.len());
        v.iter().for_each(|&x| self.u64(x));
    }
    fn floats<F: Real>(&mut self, v: &[F]) {
        self.len(v.len());
        for &x in v {
            if F::IS_F64 {
                self.f64(x.to_f64());
            } else {
                self.u32((x.to_f64() as f32).to_bits());
            }
        }
    }
}

/// The payload's reader: every read checks the bytes left (a damaged length cannot allocate more
/// than the file holds).
struct In<'a>(&'a [u8]);

impl<'a> In<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.0.len() {
            return Err(bad(format!("the file ends inside {what}")));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }
    fn f64(&mut self, what: &str) -> Result<f64> {
        Ok(f64::from_bits(self.u64(what)?))
    }
    fn usize(&mut self, what: &str) -> Result<usize> {
        let v = self.u64(what)?;
        usize::try_from(v).map_err(|_| bad(format!("{what} = {v} is larger than this machine can address")))
    }
    /// An array of `len` elements of `size` bytes, as chunks.
    fn array(&mut self, size: usize, what: &str) -> Result<std::slice::ChunksExact<'a, u8>> {
        let len = self.usize(what)?;
        let bytes = len.checked_mul(size).ok_or_else(|| bad(format!("the length of {what} is damaged")))?;
        Ok(self.take(bytes, what)?.chunks_exact(size))
    }
    fn u32s(&mut self, what: &str) -> Result<Vec<u32>> {
        Ok(self.array(4, what)?.map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes"))).collect())
    }
    fn i32s(&mut self, what: &str) -> Result<Vec<i32>> {
        Ok(self.array(4, what)?.map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes"))).collect())
    }
    fn u64s(&mut self, what: &str) -> Result<Vec<u64>> {
        Ok(self.array(8, what)?.map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect())
    }
    fn floats<F: Real>(&mut self, what: &str) -> Result<Vec<F>> {
        let size = if F::IS_F64 { 8 } else { 4 };
        Ok(self
            .array(size, what)?
            .map(|c| match c.len() {
                8 => F::from_f64(f64::from_le_bytes(c.try_into().expect("8 bytes"))),
                _ => F::from_f64(f32::from_le_bytes(c.try_into().expect("4 bytes")) as f64),
            })
            .collect())
    }
}

impl<F: Real> PsfResampler<F> {
    /// The operator in the saved format (see [`PsfResampler::save`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut p = Out(Vec::new());
        self.payload(&mut p);
        let mut out = Vec::with_capacity(HEADER + p.0.len() + 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(std::mem::size_of::<F>() as u32).to_le_bytes());
        out.extend_from_slice(&(p.0.len() as u64).to_le_bytes());
        out.extend_from_slice(&p.0);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Writes the operator to `w` in a versioned binary format, for [`PsfResampler::load`] in
    /// another run or process (a dask worker, the next time step of a model): about
    /// `N·npt·(4 + size of F) + N·(4 + size of F) + 8·K` bytes. Settings of this run (the device,
    /// `num_threads`) are not saved: they are given when loading.
    ///
    /// # Examples
    /// ```
    /// use healpix_psf::{Device, Params, PsfResampler};
    /// let (lon, lat): (Vec<f64>, Vec<f64>) = (0..400).map(|i| (8.0 + 0.01 * (i % 20) as f64, 45.0 + 0.01 * (i / 20) as f64)).unzip();
    /// let op = PsfResampler::<f64>::new(&lon, &lat, &Params::new(10))?;
    /// let mut file = Vec::new();
    /// op.save(&mut file)?;
    /// let back = PsfResampler::<f64>::load(&mut file.as_slice(), Device::Cpu, 0)?;
    /// assert_eq!(back.cell_ids(), op.cell_ids());
    /// assert_eq!(back.m_triplets(), op.m_triplets()); // the same bits
    /// # Ok::<(), healpix_psf::Error>(())
    /// ```
    pub fn save(&self, w: &mut impl Write) -> Result<()> {
        w.write_all(&self.to_bytes()).and_then(|_| w.flush()).map_err(|e| io(Path::new("<stream>"), e))
    }

    /// [`PsfResampler::save`] into the file `path`, written whole or not at all: into a temporary
    /// file beside it, renamed over `path` once complete.
    pub fn save_file(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let name = path.file_name().ok_or_else(|| io(path, std::io::ErrorKind::InvalidInput.into()))?;
        let tmp = path.with_file_name(format!(".{}.{}.partial", name.to_string_lossy(), std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&self.to_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(path, e)
        })
    }

    /// Reads an operator written by [`PsfResampler::save`] and places it on `device` (its fits
    /// run with `num_threads` threads, 0 = all cores). The file's float type must be `F` (see
    /// [`saved_precision`]). Errors: [`Error::BadOperatorFile`] for another format version or
    /// float type, a damaged or truncated file; [`Error::Io`] when reading fails.
    pub fn load(r: &mut impl Read, device: Device, num_threads: usize) -> Result<Self> {
        let stream = || Path::new("<stream>");
        let mut head = [0u8; HEADER];
        let got = read_up_to(r, &mut head).map_err(|e| io(stream(), e))?;
        let (_, float, len) = header(&head[..got])?;
        let want = std::mem::size_of::<F>() as u32;
        if float != want {
            let (is, asked) = (if float == 4 { "f32" } else { "f64" }, if F::IS_F64 { "f64" } else { "f32" });
            return Err(bad(format!("the file holds an {is} operator, loaded as {asked}: load it as {is}")));
        }
        let mut rest = Vec::new();
        // never more than the header promises (a damaged length reads what is there, then fails)
        r.take(len.saturating_add(4)).read_to_end(&mut rest).map_err(|e| io(stream(), e))?;
        if (rest.len() as u64) < len.saturating_add(4) {
            return Err(bad(format!(
                "the file is truncated: {} bytes after the header, {} expected",
                rest.len(),
                len.saturating_add(4)
            )));
        }
        let (payload, crc) = rest.split_at(rest.len() - 4);
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&head);
        hasher.update(payload);
        if hasher.finalize().to_le_bytes() != crc {
            return Err(bad("the checksum does not match: the file is damaged"));
        }
        Self::from_payload(payload, device, num_threads)
    }

    /// [`PsfResampler::load`] from the file `path`.
    pub fn load_file(path: impl AsRef<Path>, device: Device, num_threads: usize) -> Result<Self> {
        let path = path.as_ref();
        let f = std::fs::File::open(path).map_err(|e| io(path, e))?;
        Self::load(&mut std::io::BufReader::new(f), device, num_threads).map_err(|e| naming(path, e))
    }

    fn payload(&self, p: &mut Out) {
        let (rw, ri, rm) = self.rings();
        p.u8(self.level());
        p.u8(self.nest() as u8);
        p.u8(match self.ellipsoid() {
            Ellipsoid::Wgs84 => 0,
            Ellipsoid::Sphere => 1,
        });
        p.u8(0);
        for r in [rw, ri, rm, 0] {
            p.u32(r);
        }
        p.len(self.npt());
        for v in [self.sigma_m(), self.threshold(), self.radius()] {
            p.f64(v);
        }
        p.len(self.n);
        let i = &self.info;
        for c in [i.n_sample_cells, i.n_candidates, i.n_kept, i.n_partial_rows, i.n_empty_rows] {
            p.len(c);
        }
        for s in [i.hash_s, i.keep_s, i.search_s, i.area_s, i.assemble_s] {
            p.f64(s);
        }
        p.u64s(&self.cell_ids);
        p.u32s(&self.order);
        p.i32s(&self.host_samples().hi);
        p.floats(self.host_d_m());
        p.floats(self.host_area());
        p.u32s(&self.uncomputable);
        p.u32s(&self.fill_from);
    }

    fn from_payload(payload: &[u8], device: Device, num_threads: usize) -> Result<Self> {
        let mut r = In(payload);
        let (level, nest, ellipsoid, _) = (r.u8("level")?, r.u8("nest")?, r.u8("ellipsoid")?, r.u8("flags")?);
        let ellipsoid = match ellipsoid {
            0 => Ellipsoid::Wgs84,
            1 => Ellipsoid::Sphere,
            e => return Err(bad(format!("unknown ellipsoid code {e}"))),
        };
        let rings = [r.u32("rings")?, r.u32("rings")?, r.u32("rings")?, r.u32("rings")?];
        let npt = r.usize("npt")?;
        let (sigma_m, threshold, radius) = (r.f64("sigma_m")?, r.f64("threshold")?, r.f64("radius")?);
        let params = Params {
            npt,
            sigma_m: Some(sigma_m),
            threshold,
            nest: nest != 0,
            radius,
            ellipsoid,
            ring_weight: Some(rings[0]),
            ring_search_init: Some(rings[1]),
            ring_search_max: Some(rings[2]),
            num_threads,
            device,
            ..Params::new(level)
        };
        let saved = |e: Error| bad(format!("the saved parameters are invalid ({e})"));
        let cfg = Config::resolve(&params).map_err(saved)?;
        cfg.check_float::<F>().map_err(saved)?;
        let grid = Grid::new(level, nest != 0, ellipsoid).map_err(saved)?;
        let n = r.usize("N")?;
        let mut info = BuildInfo::default();
        for c in [
            &mut info.n_sample_cells,
            &mut info.n_candidates,
            &mut info.n_kept,
            &mut info.n_partial_rows,
            &mut info.n_empty_rows,
        ] {
            *c = r.usize("the build's counts")?;
        }
        for s in [&mut info.hash_s, &mut info.keep_s, &mut info.search_s, &mut info.area_s, &mut info.assemble_s] {
            *s = r.f64("the build's times")?;
        }
        let cell_ids = r.u64s("cell_ids")?;
        let order = r.u32s("the sample order")?;
        let hi = r.i32s("hi")?;
        let d_m = r.floats::<F>("d_m")?;
        let area: Vec<f64> = r.floats::<F>("area")?.iter().map(|a| a.to_f64()).collect();
        let uncomputable = r.u32s("the uncomputable cells")?;
        let fill_from = r.u32s("the fill samples")?;
        if !r.0.is_empty() {
            return Err(bad(format!("{} bytes after the last array", r.0.len())));
        }
        let content = |e: Error| bad(format!("its content is not an operator ({e})"));
        check_links(&grid, npt, order.len(), &cell_ids, &hi, &d_m).map_err(content)?;
        validate_area(&area, order.len(), None).map_err(content)?;
        check_samples(&order, n)?;
        check_cells(&uncomputable, &fill_from, cell_ids.len(), n)?;
        let target = backend::open(device)?;
        // assembled over the positions, then given the caller's indices (a mask may leave some out)
        let positions = (0..order.len() as u32).collect();
        let links = assemble::Links { cell_ids, hi, d_m, area, order: positions };
        let mut op = with_threads(num_threads, || assemble::assemble::<F>(grid, cfg, links, target, &[], Vec::new()))??;
        op.position = assemble::inverse(&order, n);
        op.order = order;
        op.n = n;
        op.uncomputable = uncomputable;
        op.fill_from = fill_from;
        op.info = info;
        Ok(op)
    }
}

/// Reads until `buf` is full or the stream ends; the bytes read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The sample order: distinct caller indices below `n`.
fn check_samples(order: &[u32], n: usize) -> Result<()> {
    if order.len() > n || n >= u32::MAX as usize {
        return Err(bad(format!("{} samples in use of N = {n}", order.len())));
    }
    let mut seen = vec![false; n];
    for &i in order {
        let s = seen.get_mut(i as usize).ok_or_else(|| bad(format!("sample index {i} ≥ N = {n}")))?;
        if std::mem::replace(s, true) {
            return Err(bad(format!("sample {i} appears twice in the sample order")));
        }
    }
    Ok(())
}

/// The restricted output's cells: ascending indices below `k`, and one fill sample (< `n`) each or none.
fn check_cells(uncomputable: &[u32], fill_from: &[u32], k: usize, n: usize) -> Result<()> {
    if uncomputable.windows(2).any(|w| w[0] >= w[1]) || uncomputable.last().is_some_and(|&c| c as usize >= k) {
        return Err(bad("the uncomputable cells are not ascending cell indices"));
    }
    if !(fill_from.is_empty() || fill_from.len() == uncomputable.len()) || fill_from.iter().any(|&i| i as usize >= n) {
        return Err(bad("the fill samples do not match the uncomputable cells"));
    }
    Ok(())
}
