//! Is this file whole before NetCDF-C reads it?
//!
//! NetCDF-C reads a truncated NetCDF-3 file with the missing part as zeros
//! (silently wrong output), reports a truncated NetCDF-4 file only as
//! "NetCDF: HDF error", and may misbehave on damaged headers. So before a
//! file is opened, [`check`] reads its header, validates it, and compares the
//! size the header implies with the size on disk.
//!
//! * NetCDF-3 (classic `CDF\x01`, 64-bit offset `CDF\x02`, CDF-5 `CDF\x05`):
//!   the whole header is parsed and checked; the implied size is the one
//!   NetCDF-C itself computes (the last fixed variable's padded end, or the
//!   start of the record section plus all records).
//! * NetCDF-4 (HDF5, signature at 0 or at a user-block offset 512, 1024, …):
//!   the superblock's end-of-file address is compared with the file length.
//!
//! Errors are plain strings: `"empty file (0 bytes)"`, `"not a NetCDF file
//! (…)"`, `"truncated: …"`, `"damaged header: …"`. Nothing here panics,
//! whatever the bytes.

use std::fs::File;
use std::io::Read;
use std::path::Path;

/// How much of a file [`check`] reads first: enough for nearly any header.
const FIRST_READ: u64 = 8 << 20;
/// The largest NetCDF-3 header [`check`] is willing to read.
const MAX_HEADER: u64 = 256 << 20;
/// The HDF5 format signature.
const HDF5_SIGNATURE: &[u8; 8] = b"\x89HDF\r\n\x1a\n";

/// The on-disk format of a NetCDF file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// NetCDF-3 classic (`CDF\x01`).
    Classic,
    /// NetCDF-3 64-bit offset (`CDF\x02`).
    Offset64,
    /// NetCDF-3 64-bit data, CDF-5 (`CDF\x05`).
    Cdf5,
    /// NetCDF-4, stored as HDF5.
    Hdf5,
}

/// The result of a successful check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub format: Format,
    /// Bytes on disk.
    pub size: u64,
    /// The size the header implies, when known: the NetCDF-3 size NetCDF-C
    /// computes (`None` for a streaming record count), or the HDF5
    /// superblock's end-of-file address (`None` when it is undefined or the
    /// superblock version is not understood).
    pub expected: Option<u64>,
}

/// Why parsing stopped: the header goes on past the bytes given (but not
/// past the end of the file), or a definite problem.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Problem {
    NeedMore,
    Fatal(String),
}

impl Problem {
    /// A "damaged header" problem.
    fn damaged(what: String) -> Problem {
        Problem::Fatal(format!("damaged header: {what}"))
    }

    /// Adds where a fatal problem happened, e.g. "(in variable 3)"; an outer
    /// place joins the inner one: "(in attribute 'x', in variable 'v')".
    fn within(self, place: impl FnOnce() -> String) -> Problem {
        match self {
            Problem::Fatal(text) => match text.strip_suffix(')') {
                Some(inner) if text.contains(" (in ") => Problem::Fatal(format!("{inner}, {})", place())),
                _ => Problem::Fatal(format!("{text} ({})", place())),
            },
            Problem::NeedMore => Problem::NeedMore,
        }
    }
}

/// Checks that the file at `path` looks like a whole NetCDF file.
///
/// Reads the first 8 MiB; a NetCDF-3 header longer than that is read whole,
/// up to 256 MiB.
pub fn check(path: &Path) -> Result<Checked, String> {
    let shown = path.display();
    let file_len = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?.len();
    let first = read_prefix(path, FIRST_READ.min(file_len))?;
    match inspect(&first, file_len) {
        Err(Problem::NeedMore) => {
            let longer = read_prefix(path, MAX_HEADER.min(file_len))?;
            match inspect(&longer, file_len) {
                Err(Problem::NeedMore) => {
                    Err(format!("damaged header: the header is larger than {} MiB", MAX_HEADER >> 20))
                }
                other => other.map_err(describe),
            }
        }
        other => other.map_err(describe),
    }
}

/// Checks a file from its first bytes (`bytes`, the header and possibly
/// more) and its length on disk (`file_len`).
///
/// When the header goes on past `bytes` but the file is long enough to hold
/// it, the error is "header larger than the bytes read …": read more and try
/// again.
#[cfg_attr(not(test), allow(dead_code))] // the tests feed bytes directly
pub fn check_bytes(bytes: &[u8], file_len: u64) -> Result<Checked, String> {
    inspect(bytes, file_len).map_err(describe)
}

/// Turns a [`Problem`] into the message given to callers.
fn describe(problem: Problem) -> String {
    match problem {
        Problem::NeedMore => "header larger than the bytes read".to_string(),
        Problem::Fatal(text) => text,
    }
}

/// Reads at most `limit` bytes from the start of the file at `path`.
fn read_prefix(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    let fail = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let mut bytes = Vec::new();
    File::open(path).map_err(fail)?.take(limit).read_to_end(&mut bytes).map_err(fail)?;
    Ok(bytes)
}

/// Recognises the format from the magic bytes and runs its check.
fn inspect(bytes: &[u8], file_len: u64) -> Result<Checked, Problem> {
    // A caller passing more bytes than the file length is trusted on the bytes.
    let file_len = file_len.max(bytes.len() as u64);
    if file_len == 0 {
        return Err(Problem::Fatal("empty file (0 bytes)".to_string()));
    }
    if bytes.starts_with(b"CDF") {
        return check_cdf(bytes, file_len);
    }
    match hdf5_signature_offset(bytes) {
        Some(offset) => check_hdf5(bytes, offset, file_len),
        None => Err(Problem::Fatal(format!(
            "not a NetCDF file (it starts with \"{}\"; NetCDF files start with CDF or \\x89HDF)",
            escaped_start(bytes)
        ))),
    }
}

/// The first (up to 8) bytes, escaped for an error message.
fn escaped_start(bytes: &[u8]) -> String {
    let start = bytes.get(..8).unwrap_or(bytes);
    start.iter().flat_map(|&b| std::ascii::escape_default(b)).map(char::from).collect()
}

// ---------------------------------------------------------------- HDF5 ---

/// Where the HDF5 signature is: at 0, or after a user block of 512, 1024,
/// 2048, … bytes.
fn hdf5_signature_offset(bytes: &[u8]) -> Option<usize> {
    let mut offset = 0usize;
    loop {
        let window = bytes.get(offset..offset.checked_add(HDF5_SIGNATURE.len())?)?;
        if window == HDF5_SIGNATURE {
            return Some(offset);
        }
        offset = if offset == 0 { 512 } else { offset.checked_mul(2)? };
    }
}

/// Checks an HDF5 file: compares the superblock's end-of-file address with
/// the file length. Unknown superblock versions, odd address sizes, an
/// undefined end-of-file address or a base address other than the
/// superblock's own position skip the comparison (`expected: None`).
fn check_hdf5(bytes: &[u8], offset: usize, file_len: u64) -> Result<Checked, Problem> {
    let superblock = bytes.get(offset..).unwrap_or_default();
    let expected = match hdf5_end_of_file(superblock, offset as u64, file_len)? {
        Some(end) if end > file_len => {
            return Err(Problem::Fatal(format!("truncated: expected {end} bytes, found {file_len}")))
        }
        other => other,
    };
    Ok(Checked { format: Format::Hdf5, size: file_len, expected })
}

/// The absolute end-of-file position recorded in an HDF5 superblock that
/// starts at `superblock` (found at file offset `at`), if understood.
///
/// Superblock layouts (all little-endian):
/// * versions 0 and 1: signature (8), versions and sizes at bytes 8..16 with
///   the size of offsets at 13, group K values (4), flags (4), then in
///   version 1 only, indexed-storage K and reserved (4); then the base
///   address, free-space address, end-of-file address, …
/// * versions 2 and 3: signature (8), version (1), size of offsets (1), size
///   of lengths (1), flags (1), then the base address, superblock extension
///   address, end-of-file address, root object header address, checksum.
fn hdf5_end_of_file(superblock: &[u8], at: u64, file_len: u64) -> Result<Option<u64>, Problem> {
    let field = |position: usize, len: usize| -> Result<&[u8], Problem> {
        match superblock.get(position..position + len) {
            Some(slice) => Ok(slice),
            None if at + (position + len) as u64 <= file_len => Err(Problem::NeedMore),
            None => Err(Problem::Fatal(format!(
                "truncated: the HDF5 superblock needs {} bytes, found {file_len}",
                at + (position + len) as u64
            ))),
        }
    };
    let version = field(8, 1)?[0];
    let (size_position, base_position) = match version {
        0 => (13, 24),
        1 => (13, 28),
        2 | 3 => (9, 12),
        _ => return Ok(None),
    };
    let size = usize::from(field(size_position, 1)?[0]);
    if !matches!(size, 2 | 4 | 8) {
        return Ok(None);
    }
    let base = little_endian(field(base_position, size)?);
    let end = little_endian(field(base_position + 2 * size, size)?);
    let undefined = u64::MAX >> (64 - 8 * size);
    if base != at || end == undefined {
        return Ok(None);
    }
    // the end-of-file address is absolute (it counts a user block before the superblock), unlike
    // the other addresses: HDF5 writes the relative end plus the base address
    Ok(Some(end))
}

/// A little-endian unsigned integer of up to 8 bytes.
fn little_endian(bytes: &[u8]) -> u64 {
    bytes.iter().rev().fold(0, |value, &b| (value << 8) | u64::from(b))
}

// ------------------------------------------------------------ NetCDF-3 ---

/// One dimension of a NetCDF-3 header.
#[derive(Debug)]
struct Dimension {
    name: String,
    /// Length; 0 marks the record (unlimited) dimension.
    length: u64,
}

/// One variable of a NetCDF-3 header, as far as sizes are concerned.
#[derive(Debug)]
struct Variable {
    name: String,
    dim_ids: Vec<usize>,
    type_size: u64,
    begin: u64,
}

/// A parsed NetCDF-3 header.
#[derive(Debug)]
struct Header {
    /// Number of records; `None` when the file says "streaming".
    numrecs: Option<u64>,
    dims: Vec<Dimension>,
    vars: Vec<Variable>,
    /// Length of the header in bytes.
    len: u64,
}

/// Checks a NetCDF-3 file (`bytes` starts with "CDF").
fn check_cdf(bytes: &[u8], file_len: u64) -> Result<Checked, Problem> {
    let format = match bytes.get(3) {
        Some(1) => Format::Classic,
        Some(2) => Format::Offset64,
        Some(5) => Format::Cdf5,
        Some(v) => {
            return Err(Problem::Fatal(format!(
                "not a NetCDF file (it starts with \"{}\"; known NetCDF-3 versions are CDF\\x01, CDF\\x02 and CDF\\x05, not \\x{v:02x})",
                escaped_start(bytes)
            )))
        }
        None if file_len >= 4 => return Err(Problem::NeedMore),
        None => return Err(truncated_header(4, file_len)),
    };
    let header = parse_header(bytes, file_len, format)?;
    let (expected, required) = implied_size(&header)?;
    if file_len < required {
        let shown = expected.unwrap_or(required);
        return Err(Problem::Fatal(format!("truncated: expected {shown} bytes, found {file_len}")));
    }
    Ok(Checked { format, size: file_len, expected })
}

/// "truncated: the header …" for a header that needs `needed` bytes.
fn truncated_header(needed: u64, file_len: u64) -> Problem {
    Problem::Fatal(format!("truncated: the header needs at least {needed} bytes, the file has {file_len}"))
}

/// A big-endian reader over the header bytes that never reads past them.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    file_len: u64,
    /// CDF-5: counts and lengths are 8 bytes instead of 4.
    wide: bool,
}

impl<'a> Reader<'a> {
    /// The next `n` bytes. Past the bytes given: [`Problem::NeedMore`] when the
    /// file holds them, a "truncated" problem otherwise.
    fn take(&mut self, n: u64) -> Result<&'a [u8], Problem> {
        let end = (self.pos as u64).checked_add(n);
        let slice =
            end.and_then(|end| usize::try_from(end).ok()).and_then(|end| Some((end, self.bytes.get(self.pos..end)?)));
        match (slice, end) {
            (Some((end, slice)), _) => {
                self.pos = end;
                Ok(slice)
            }
            (None, Some(end)) if end <= self.file_len => Err(Problem::NeedMore),
            (None, _) => Err(truncated_header(end.unwrap_or(u64::MAX), self.file_len)),
        }
    }

    /// A big-endian unsigned integer of `n` (at most 8) bytes.
    fn uint(&mut self, n: u64) -> Result<u64, Problem> {
        Ok(self.take(n)?.iter().fold(0, |value, &b| (value << 8) | u64::from(b)))
    }

    /// A 4-byte value (tags, type codes, classic offsets).
    fn u32(&mut self) -> Result<u64, Problem> {
        self.uint(4)
    }

    /// A count or length: 4 bytes, or 8 in CDF-5.
    fn count(&mut self) -> Result<u64, Problem> {
        self.uint(if self.wide { 8 } else { 4 })
    }

    /// Bytes left in the file after the current position.
    fn left_in_file(&self) -> u64 {
        self.file_len.saturating_sub(self.pos as u64)
    }

    /// Checks that `count` items of at least `min_size` bytes each can fit in
    /// the rest of the file, so that a bad count is reported rather than
    /// looped over. Items that would fit in a header of up to 256 MiB suggest
    /// a truncated file; more than that, a damaged count.
    fn plausible(&self, count: u64, min_size: u64, what: &str) -> Result<usize, Problem> {
        let at = self.pos;
        let left = self.left_in_file();
        match count.checked_mul(min_size) {
            Some(needed) if needed <= left => usize::try_from(count)
                .map_err(|_| Problem::damaged(format!("{count} {what} at byte {at}"))),
            Some(needed) if needed <= MAX_HEADER => Err(Problem::Fatal(format!(
                "truncated: the header needs at least {} bytes ({count} {what} declared before byte {at}), the file has {}",
                at as u64 + needed,
                self.file_len
            ))),
            _ => Err(Problem::damaged(format!(
                "{count} {what} declared before byte {at} cannot fit in the {left} bytes left in the file"
            ))),
        }
    }

    /// A name: length, then UTF-8 bytes padded to a multiple of 4.
    fn name(&mut self) -> Result<String, Problem> {
        let at = self.pos;
        let len = self.count()?;
        self.plausible(len, 1, "name bytes")?;
        let raw = self.take(len)?;
        self.take(padding(len))?;
        match std::str::from_utf8(raw) {
            Ok("") => Err(Problem::damaged(format!("empty name at byte {at}"))),
            Ok(name) => Ok(name.to_string()),
            Err(_) => Err(Problem::damaged(format!("name at byte {at} is not valid UTF-8"))),
        }
    }

    /// A list header: ABSENT (two zeros) or `tag` followed by the count.
    /// Returns the number of items.
    fn list(&mut self, tag: u64, min_item: u64, what: &str) -> Result<usize, Problem> {
        let at = self.pos;
        let found = self.u32()?;
        let count = self.count()?;
        match found {
            0 if count == 0 => Ok(0),
            0 => Err(Problem::damaged(format!("{what} list at byte {at} has no tag but {count} entries"))),
            t if t == tag => self.plausible(count, min_item, what),
            t => Err(Problem::damaged(format!("{what} list at byte {at} has tag {t:#x}, expected {tag:#x}"))),
        }
    }
}

/// Bytes of padding after `len` bytes to reach a multiple of 4.
fn padding(len: u64) -> u64 {
    (4 - len % 4) % 4
}

/// `len` rounded up to a multiple of 4, if that does not overflow.
fn padded(len: u64) -> Option<u64> {
    len.checked_add(padding(len))
}

/// List tags of the NetCDF-3 header.
const NC_DIMENSION: u64 = 0x0A;
const NC_VARIABLE: u64 = 0x0B;
const NC_ATTRIBUTE: u64 = 0x0C;

/// Parses and validates a whole NetCDF-3 header.
fn parse_header(bytes: &[u8], file_len: u64, format: Format) -> Result<Header, Problem> {
    let wide = format == Format::Cdf5;
    let mut reader = Reader { bytes, pos: 4, file_len, wide };
    let numrecs = match reader.count()? {
        n if n == u64::MAX || (!wide && n == 0xFFFF_FFFF) => None,
        n => Some(n),
    };
    let dims = parse_dimensions(&mut reader)?;
    skip_attributes(&mut reader, format).map_err(|p| p.within(|| "in the global attributes".into()))?;
    let vars = parse_variables(&mut reader, format, &dims)?;
    let len = reader.pos as u64;
    validate_begins(&vars, len, format)?;
    Ok(Header { numrecs, dims, vars, len })
}

/// Parses the dimension list; at most one record dimension is allowed.
fn parse_dimensions(reader: &mut Reader) -> Result<Vec<Dimension>, Problem> {
    let width = if reader.wide { 8 } else { 4 };
    let count = reader.list(NC_DIMENSION, 2 * width + 4, "dimensions")?;
    let mut dims: Vec<Dimension> = Vec::new();
    for index in 0..count {
        let at = reader.pos;
        let name = reader.name().map_err(|p| p.within(|| format!("in dimension {index}")))?;
        let length = reader.count()?;
        if length == 0 {
            if let Some(other) = dims.iter().find(|d| d.length == 0) {
                return Err(Problem::damaged(format!(
                    "second record dimension '{name}' at byte {at} (the first is '{}')",
                    other.name
                )));
            }
        }
        dims.push(Dimension { name, length });
    }
    Ok(dims)
}

/// Reads past an attribute list, validating names, types and lengths.
fn skip_attributes(reader: &mut Reader, format: Format) -> Result<(), Problem> {
    let width = if reader.wide { 8 } else { 4 };
    let count = reader.list(NC_ATTRIBUTE, 2 * width + 8, "attributes")?;
    for index in 0..count {
        let name = reader.name().map_err(|p| p.within(|| format!("in attribute {index}")))?;
        let place = || format!("in attribute '{name}'");
        let type_size = read_type(reader, format).map_err(|p| p.within(place))?;
        let at = reader.pos;
        let nelems = reader.count().map_err(|p| p.within(place))?;
        let len = nelems
            .checked_mul(type_size)
            .and_then(padded)
            .ok_or_else(|| Problem::damaged(format!("attribute '{name}' at byte {at} has {nelems} values")))?;
        reader.take(len).map_err(|p| p.within(place))?;
    }
    Ok(())
}

/// Reads an `nc_type` code and returns the size of one value of that type.
fn read_type(reader: &mut Reader, format: Format) -> Result<u64, Problem> {
    let at = reader.pos;
    let code = reader.u32()?;
    let size = match code {
        1 | 2 => 1,
        3 => 2,
        4 | 5 => 4,
        6 => 8,
        7..=11 if format != Format::Cdf5 => {
            return Err(Problem::damaged(format!("type code {code} at byte {at} is only valid in CDF-5 files")))
        }
        7 => 1,
        8 => 2,
        9 => 4,
        10 | 11 => 8,
        _ => return Err(Problem::damaged(format!("unknown type code {code} at byte {at}"))),
    };
    Ok(size)
}

/// Parses the variable list.
fn parse_variables(reader: &mut Reader, format: Format, dims: &[Dimension]) -> Result<Vec<Variable>, Problem> {
    let width = if reader.wide { 8 } else { 4 };
    let begin_width = if format == Format::Classic { 4 } else { 8 };
    // name, rank, attribute list, type, vsize, begin
    let min_size = (width + 4) + width + (4 + width) + 4 + width + begin_width;
    let count = reader.list(NC_VARIABLE, min_size, "variables")?;
    let mut vars = Vec::new();
    for index in 0..count {
        let name = reader.name().map_err(|p| p.within(|| format!("in variable {index}")))?;
        let var =
            parse_variable(reader, format, dims, name).map_err(|p| p.within(|| format!("in variable {index}")))?;
        vars.push(var);
    }
    Ok(vars)
}

/// Parses one variable after its name: dimension ids, attributes, type,
/// vsize (ignored: it saturates for huge variables) and begin.
fn parse_variable(reader: &mut Reader, format: Format, dims: &[Dimension], name: String) -> Result<Variable, Problem> {
    let width = if reader.wide { 8 } else { 4 };
    let rank_at = reader.pos;
    let rank = reader.count()?;
    let rank = reader.plausible(rank, width, "dimension ids")?;
    let mut dim_ids = Vec::new();
    for position in 0..rank {
        let at = reader.pos;
        let id = reader.count()?;
        let dim = usize::try_from(id).ok().and_then(|i| Some((i, dims.get(i)?)));
        match dim {
            Some((_, dim)) if dim.length == 0 && position > 0 => {
                return Err(Problem::damaged(format!(
                    "variable '{name}' uses the record dimension '{}' at position {position} (byte {at}); it may only come first",
                    dim.name
                )))
            }
            Some((i, _)) => dim_ids.push(i),
            None => {
                return Err(Problem::damaged(format!(
                    "variable '{name}' (rank at byte {rank_at}) refers to dimension id {id} at byte {at}, but there are {} dimensions",
                    dims.len()
                )))
            }
        }
    }
    skip_attributes(reader, format).map_err(|p| p.within(|| format!("in the attributes of variable '{name}'")))?;
    let type_size = read_type(reader, format)?;
    reader.count()?; // vsize
    let begin = if format == Format::Classic { reader.u32()? } else { reader.uint(8)? };
    Ok(Variable { name, dim_ids, type_size, begin })
}

/// Checks that every variable's data starts after the header and within the
/// offsets the format allows.
fn validate_begins(vars: &[Variable], header_len: u64, format: Format) -> Result<(), Problem> {
    let limit = if format == Format::Classic { i32::MAX as u64 } else { i64::MAX as u64 };
    for var in vars {
        if var.begin < header_len {
            return Err(Problem::damaged(format!(
                "variable '{}' begins at byte {}, inside the {header_len}-byte header",
                var.name, var.begin
            )));
        }
        if var.begin > limit {
            return Err(Problem::damaged(format!(
                "variable '{}' begins at byte {}, beyond what the format allows",
                var.name, var.begin
            )));
        }
    }
    Ok(())
}

/// The sizes of one variable's data: per record for record variables, whole
/// otherwise; unpadded and padded to a multiple of 4.
#[derive(Debug, Clone, Copy)]
struct DataSize {
    is_record: bool,
    unpadded: u64,
    padded: u64,
}

/// Computes a variable's data size from its dimensions and type.
fn data_size(var: &Variable, dims: &[Dimension]) -> Result<DataSize, Problem> {
    let overflow = || Problem::damaged(format!("the size of variable '{}' overflows", var.name));
    let is_record = var.dim_ids.first().and_then(|&i| dims.get(i)).is_some_and(|d| d.length == 0);
    let fixed_dims = var.dim_ids.iter().skip(usize::from(is_record));
    let mut unpadded = var.type_size;
    for length in fixed_dims.filter_map(|&i| dims.get(i)).map(|d| d.length) {
        unpadded = unpadded.checked_mul(length).ok_or_else(overflow)?;
    }
    let padded = padded(unpadded).ok_or_else(overflow)?;
    Ok(DataSize { is_record, unpadded, padded })
}

/// The size the header implies, as NetCDF-C computes it (`None` for a
/// streaming record count), and the least size that still holds every data
/// byte (the same, less any final padding, which NetCDF-C does not need).
fn implied_size(header: &Header) -> Result<(Option<u64>, u64), Problem> {
    let overflow = || Problem::damaged("the data size implied by the header overflows".to_string());
    let sizes = header.vars.iter().map(|var| data_size(var, &header.dims)).collect::<Result<Vec<_>, _>>()?;
    let (mut expected, mut required) = (header.len, header.len);
    for (var, size) in header.vars.iter().zip(&sizes).filter(|(_, s)| !s.is_record) {
        expected = expected.max(var.begin.checked_add(size.padded).ok_or_else(overflow)?);
        required = required.max(var.begin.checked_add(size.unpadded).ok_or_else(overflow)?);
    }
    let records: Vec<(&Variable, &DataSize)> = header.vars.iter().zip(&sizes).filter(|(_, s)| s.is_record).collect();
    let Some((first, _)) = records.first() else {
        return Ok((Some(expected), required));
    };
    let record_size = match records.as_slice() {
        [(_, only)] => only.unpadded,
        _ => records.iter().try_fold(0u64, |sum, (_, s)| sum.checked_add(s.padded)).ok_or_else(overflow)?,
    };
    let numrecs = header.numrecs.unwrap_or(0);
    let record_end =
        numrecs.checked_mul(record_size).and_then(|all| all.checked_add(first.begin)).ok_or_else(overflow)?;
    required = required.max(last_record_end(&records, numrecs, record_size).ok_or_else(overflow)?);
    let expected = expected.max(record_end);
    Ok((header.numrecs.map(|_| expected), required))
}

/// The end of the last data byte of the last record (0 without records).
fn last_record_end(records: &[(&Variable, &DataSize)], numrecs: u64, record_size: u64) -> Option<u64> {
    let Some(last_record) = numrecs.checked_sub(1) else {
        return Some(0);
    };
    let start = last_record.checked_mul(record_size)?;
    records
        .iter()
        .try_fold(0u64, |end, (var, size)| Some(end.max(var.begin.checked_add(start)?.checked_add(size.unpadded)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A variable for [`build_classic`]: name, dimension indices, type code.
    struct TestVar {
        name: &'static str,
        dims: Vec<u32>,
        nc_type: u32,
    }

    /// Size of one value of a type code.
    fn type_size(code: u32) -> u64 {
        match code {
            1 | 2 | 7 => 1,
            3 | 8 => 2,
            4 | 5 | 9 => 4,
            _ => 8,
        }
    }

    /// Appends a big-endian count: 4 bytes, or 8 in CDF-5.
    fn put_count(out: &mut Vec<u8>, version: u8, value: u64) {
        if version == 5 {
            out.extend_from_slice(&value.to_be_bytes());
        } else {
            out.extend_from_slice(&(value as u32).to_be_bytes());
        }
    }

    /// Appends a padded name.
    fn put_name(out: &mut Vec<u8>, version: u8, name: &str) {
        put_count(out, version, name.len() as u64);
        out.extend_from_slice(name.as_bytes());
        out.resize(out.len() + padding(name.len() as u64) as usize, 0);
    }

    /// Appends one text attribute list holding `name = text`.
    fn put_text_attribute(out: &mut Vec<u8>, version: u8, name: &str, text: &str) {
        out.extend_from_slice(&(NC_ATTRIBUTE as u32).to_be_bytes());
        put_count(out, version, 1);
        put_name(out, version, name);
        out.extend_from_slice(&2u32.to_be_bytes());
        put_count(out, version, text.len() as u64);
        out.extend_from_slice(text.as_bytes());
        out.resize(out.len() + padding(text.len() as u64) as usize, 0);
    }

    /// Writes a NetCDF-3 header with one global attribute, and one text
    /// attribute per variable; `placed` gives each variable's vsize and begin.
    fn write_header(
        version: u8,
        dims: &[(&str, u64)],
        vars: &[TestVar],
        numrecs: u64,
        placed: &[(u64, u64)],
    ) -> Vec<u8> {
        let mut out = b"CDF".to_vec();
        out.push(version);
        put_count(&mut out, version, numrecs);
        out.extend_from_slice(&(NC_DIMENSION as u32).to_be_bytes());
        put_count(&mut out, version, dims.len() as u64);
        for (name, len) in dims {
            put_name(&mut out, version, name);
            put_count(&mut out, version, *len);
        }
        put_text_attribute(&mut out, version, "title", "hello");
        let tag = if vars.is_empty() { 0 } else { NC_VARIABLE as u32 };
        out.extend_from_slice(&tag.to_be_bytes());
        put_count(&mut out, version, vars.len() as u64);
        for (var, &(vsize, begin)) in vars.iter().zip(placed) {
            put_name(&mut out, version, var.name);
            put_count(&mut out, version, var.dims.len() as u64);
            for id in &var.dims {
                put_count(&mut out, version, u64::from(*id));
            }
            put_text_attribute(&mut out, version, "units", "K");
            out.extend_from_slice(&var.nc_type.to_be_bytes());
            put_count(&mut out, version, vsize);
            if version == 1 {
                out.extend_from_slice(&(begin as u32).to_be_bytes());
            } else {
                out.extend_from_slice(&begin.to_be_bytes());
            }
        }
        out
    }

    /// Writes a correct NetCDF-3 file (header and zeroed data of the right
    /// size) of `version` 1, 2 or 5, with dimensions (length 0 = record): fixed
    /// variables first after the header, then the record section.
    fn build_classic(version: u8, dims: &[(&str, u64)], vars: &[TestVar], numrecs: u64) -> Vec<u8> {
        let dim_len = |i: &u32| dims[*i as usize].1;
        let is_record = |v: &TestVar| v.dims.first().is_some_and(|i| dim_len(i) == 0);
        let size_of = |v: &TestVar| {
            let skip = usize::from(is_record(v));
            v.dims.iter().skip(skip).map(dim_len).product::<u64>() * type_size(v.nc_type)
        };
        let vsizes: Vec<u64> = vars.iter().map(|v| padded(size_of(v)).unwrap()).collect();
        let unplaced: Vec<(u64, u64)> = vsizes.iter().map(|&v| (v, 0)).collect();
        let header_len = write_header(version, dims, vars, numrecs, &unplaced).len() as u64;
        let mut placed = unplaced;
        let mut at = header_len;
        let (records, fixed): (Vec<usize>, Vec<usize>) = (0..vars.len()).partition(|&i| is_record(&vars[i]));
        for &i in &fixed {
            placed[i].1 = at;
            at += vsizes[i];
        }
        let record_start = at;
        for &i in &records {
            placed[i].1 = at;
            at += vsizes[i];
        }
        let record_size = match records.as_slice() {
            [only] => size_of(&vars[*only]),
            _ => at - record_start,
        };
        let mut out = write_header(version, dims, vars, numrecs, &placed);
        out.resize((record_start + numrecs * record_size) as usize, 0);
        out
    }

    /// A file with a record dimension, a record variable and a fixed one.
    fn sample(version: u8) -> Vec<u8> {
        let dims = [("time", 0), ("lat", 3), ("lon", 5)];
        let vars = [
            TestVar { name: "lat", dims: vec![1], nc_type: 5 },
            TestVar { name: "sst", dims: vec![0, 1, 2], nc_type: 6 },
            TestVar { name: "time", dims: vec![0], nc_type: 6 },
        ];
        build_classic(version, &dims, &vars, 4)
    }

    /// Sample files of all three NetCDF-3 versions, with their formats.
    fn samples() -> Vec<(Vec<u8>, Format)> {
        vec![(sample(1), Format::Classic), (sample(2), Format::Offset64), (sample(5), Format::Cdf5)]
    }

    #[test]
    fn valid_netcdf3_files_are_whole() {
        for (bytes, format) in samples() {
            let len = bytes.len() as u64;
            let checked = check_bytes(&bytes, len).unwrap();
            assert_eq!(checked, Checked { format, size: len, expected: Some(len) });
        }
    }

    #[test]
    fn truncated_netcdf3_files_are_reported() {
        for (bytes, _) in samples() {
            let len = bytes.len();
            for cut in [len - 1, len / 2] {
                let message = check_bytes(&bytes[..cut], cut as u64).unwrap_err();
                assert_eq!(message, format!("truncated: expected {len} bytes, found {cut}"));
            }
        }
    }

    #[test]
    fn header_longer_than_the_bytes_given() {
        let bytes = sample(2);
        let message = check_bytes(&bytes[..40], bytes.len() as u64).unwrap_err();
        assert_eq!(message, "header larger than the bytes read");
        let message = check_bytes(&bytes[..40], 40).unwrap_err();
        assert!(message.starts_with("truncated: the header needs at least"), "{message}");
    }

    #[test]
    fn single_record_variable_is_not_padded() {
        let dims = [("time", 0), ("x", 3)];
        let vars = [TestVar { name: "v", dims: vec![0, 1], nc_type: 3 }];
        let bytes = build_classic(1, &dims, &vars, 5);
        let len = bytes.len() as u64;
        assert_eq!(check_bytes(&bytes, len).unwrap().expected, Some(len));
        // 5 records of 6 bytes: the header implies no padding.
        assert_eq!(len % 4, 2);
    }

    #[test]
    fn final_padding_may_be_missing() {
        let dims = [("x", 3)];
        let vars = [TestVar { name: "v", dims: vec![0], nc_type: 1 }];
        let bytes = build_classic(1, &dims, &vars, 0);
        let len = bytes.len() as u64;
        let checked = check_bytes(&bytes[..bytes.len() - 1], len - 1).unwrap();
        assert_eq!(checked.expected, Some(len));
        assert!(check_bytes(&bytes[..bytes.len() - 2], len - 2).is_err());
    }

    #[test]
    fn streaming_record_count_skips_the_record_check() {
        let mut bytes = sample(1);
        bytes[4..8].copy_from_slice(&[0xFF; 4]);
        let len = bytes.len() as u64;
        assert_eq!(check_bytes(&bytes, len).unwrap().expected, None);
    }

    #[test]
    fn file_without_variables_is_valid() {
        for version in [1, 2, 5] {
            let bytes = build_classic(version, &[("x", 2)], &[], 0);
            let len = bytes.len() as u64;
            assert_eq!(check_bytes(&bytes, len).unwrap().expected, Some(len));
        }
    }

    #[test]
    fn empty_and_foreign_files() {
        assert_eq!(check_bytes(b"", 0).unwrap_err(), "empty file (0 bytes)");
        assert_eq!(
            check_bytes(b"hello", 5).unwrap_err(),
            "not a NetCDF file (it starts with \"hello\"; NetCDF files start with CDF or \\x89HDF)"
        );
        assert!(check_bytes(b"CDF\x04\0\0\0\0", 8).unwrap_err().starts_with("not a NetCDF file"));
    }

    #[test]
    fn damaged_headers_are_reported() {
        let bytes = sample(1);
        let len = bytes.len() as u64;
        let damage = |at: usize, value: &[u8]| {
            let mut copy = bytes.clone();
            copy[at..at + value.len()].copy_from_slice(value);
            check_bytes(&copy, len).unwrap_err()
        };
        // Dimension list tag, dimension count, name length of the first dimension.
        assert!(damage(8, &[0, 0, 0, 9]).starts_with("damaged header: dimensions list"));
        assert!(damage(12, &[0x7F, 0xFF, 0xFF, 0xFF]).starts_with("damaged header: 2147483647 dimensions"));
        assert!(damage(16, &[0xFF; 4]).starts_with("damaged header: 4294967295 name bytes"));
        // The second dimension ("time" is 4 bytes, so lat starts at 28) made a record dimension.
        assert!(damage(36, &[0; 4]).starts_with("damaged header: second record dimension 'lat'"));
    }

    /// An HDF5 superblock of `version` at `offset` with end-of-file address `eof`.
    fn hdf5(version: u8, offset: usize, eof: u64) -> Vec<u8> {
        let mut out = vec![0u8; offset];
        out.extend_from_slice(HDF5_SIGNATURE);
        let base = offset as u64;
        if version < 2 {
            out.extend_from_slice(&[version, 0, 0, 0, 0, 8, 8, 0, 4, 0, 16, 0, 0, 0, 0, 0]);
            if version == 1 {
                out.extend_from_slice(&[32, 0, 0, 0]);
            }
            for address in [base, u64::MAX, eof, u64::MAX] {
                out.extend_from_slice(&address.to_le_bytes());
            }
        } else {
            out.extend_from_slice(&[version, 8, 8, 0]);
            for address in [base, u64::MAX, eof, 48] {
                out.extend_from_slice(&address.to_le_bytes());
            }
            out.extend_from_slice(&[0; 4]);
        }
        out.resize(offset + 200, 0);
        out
    }

    #[test]
    fn hdf5_end_of_file_address() {
        for version in [0, 1, 2, 3] {
            for offset in [0, 512, 2048] {
                // the end-of-file address is absolute: offset + 200 for a file of that size
                // (checked on a file h5py wrote with a 512-byte user block)
                let bytes = hdf5(version, offset, offset as u64 + 200);
                let len = bytes.len() as u64;
                let checked = check_bytes(&bytes, len).unwrap();
                assert_eq!(checked.format, Format::Hdf5);
                assert_eq!(checked.expected, Some(len));
                let expected = offset as u64 + 1000;
                let bytes = hdf5(version, offset, expected);
                let message = check_bytes(&bytes, len).unwrap_err();
                assert_eq!(message, format!("truncated: expected {expected} bytes, found {len}"));
            }
        }
    }

    #[test]
    fn hdf5_unknown_versions_skip_the_check() {
        let mut bytes = hdf5(2, 0, 1000);
        bytes[8] = 9;
        let checked = check_bytes(&bytes, bytes.len() as u64).unwrap();
        assert_eq!(checked.expected, None);
        let bytes = hdf5(2, 0, 1000);
        let message = check_bytes(&bytes[..20], 20).unwrap_err();
        assert_eq!(message, "truncated: the HDF5 superblock needs 36 bytes, found 20");
        assert_eq!(check_bytes(&bytes[..20], 100).unwrap_err(), "header larger than the bytes read");
    }

    /// A small xorshift generator for the mutation test.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Applies one random mutation: truncation, bit flips, or a 4- or 8-byte
    /// field overwritten with a random or extreme value.
    fn mutate(rng: &mut XorShift, bytes: &mut Vec<u8>, header_len: usize) {
        const EXTREMES: [u64; 8] = [0, 1, 0x7FFF_FFFF, 0xFFFF_FFFF, 0x8000_0000, u64::MAX, i64::MAX as u64, 4];
        if header_len < 8 {
            return;
        }
        match rng.below(4) {
            0 => bytes.truncate(rng.below(bytes.len() + 1)),
            1 => {
                for _ in 0..=rng.below(4) {
                    let at = rng.below(header_len);
                    bytes[at] ^= 1 << rng.below(8);
                }
            }
            _ => {
                let width = if rng.below(2) == 0 { 4 } else { 8 };
                let at = rng.below(header_len.saturating_sub(width)) & !3;
                let value = if rng.below(2) == 0 { rng.next() } else { EXTREMES[rng.below(EXTREMES.len())] };
                bytes[at..at + width].copy_from_slice(&value.to_be_bytes()[8 - width..]);
            }
        }
    }

    #[test]
    fn random_damage_never_panics() {
        let mut originals: Vec<Vec<u8>> = samples().into_iter().map(|(bytes, _)| bytes).collect();
        originals.push(hdf5(0, 0, 150));
        originals.push(hdf5(2, 512, 700));
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut outcomes = [0usize; 2];
        for round in 0..20_000 {
            let original = &originals[round % originals.len()];
            let header_len = original.len().min(400);
            let mut bytes = original.clone();
            for _ in 0..=rng.below(3) {
                let limit = header_len.min(bytes.len());
                mutate(&mut rng, &mut bytes, limit);
            }
            let file_len = if rng.below(4) == 0 { rng.next() >> rng.below(64) } else { bytes.len() as u64 };
            let result = std::panic::catch_unwind(|| check_bytes(&bytes, file_len));
            assert!(result.is_ok(), "panic on round {round}: {bytes:?} (file length {file_len})");
            outcomes[usize::from(result.unwrap().is_ok())] += 1;
        }
        // Both outcomes occur: the mutations exercise the error paths and not only them.
        assert!(outcomes[0] > 1000 && outcomes[1] > 100, "{outcomes:?}");
    }

    #[test]
    fn check_reads_files_from_disk() {
        let dir = std::env::temp_dir().join(format!("integrity-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sample.nc");
        let bytes = sample(2);
        std::fs::write(&path, &bytes).unwrap();
        let checked = check(&path).unwrap();
        assert_eq!(checked.expected, Some(bytes.len() as u64));
        std::fs::write(&path, &bytes[..bytes.len() - 8]).unwrap();
        assert!(check(&path).unwrap_err().starts_with("truncated: expected"));
        std::fs::write(&path, b"").unwrap();
        assert_eq!(check(&path).unwrap_err(), "empty file (0 bytes)");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(check(&dir.join("missing.nc")).unwrap_err().starts_with("cannot read"));
    }
}
