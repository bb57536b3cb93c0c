//! The one error type of the crate.
//!
//! Every check on user input ends here with a message that says what was wrong with which input and
//! what to do about it. Nothing in the crate panics on user input.

/// What went wrong. Messages are written for the scientist who called the function.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No samples were given.
    #[error("no samples: lon_deg and lat_deg are empty (give at least one sample)")]
    EmptyInput,

    /// Two arrays that must have the same length do not.
    #[error("length mismatch: {what} has {got} entries, expected {expected}")]
    LengthMismatch {
        /// Which array.
        what: &'static str,
        /// The length it must have.
        expected: usize,
        /// The length it has.
        got: usize,
    },

    /// A coordinate is NaN, infinite or out of range.
    #[error("sample {index}: lon_deg = {lon_deg}, lat_deg = {lat_deg}: {reason}")]
    InvalidCoordinate {
        /// Index of the first offending sample.
        index: usize,
        /// Its longitude in degrees.
        lon_deg: f64,
        /// Its latitude in degrees.
        lat_deg: f64,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A parameter has an impossible value.
    #[error("invalid parameter {name} = {value}: {reason}")]
    InvalidParameter {
        /// The parameter's name as in the API.
        name: &'static str,
        /// Its value, printed.
        value: String,
        /// Why it is rejected and what to use instead.
        reason: String,
    },

    /// One entry of a per-sample array (for example `area`) is invalid.
    #[error("{what}[{index}] = {value}: {reason}")]
    InvalidValue {
        /// Which array.
        what: &'static str,
        /// Index of the first offending entry.
        index: usize,
        /// Its value.
        value: f64,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The keep stage removed every candidate cell.
    #[error(
        "no HEALPix cell passed the threshold: the largest summed Gaussian weight of a candidate cell \
         is {max_weight_sum:.6e} < threshold = {threshold}. Lower `threshold`, raise `sigma_m` \
         (now {sigma_m} m) or use a coarser `level`"
    )]
    NoCellPassedThreshold {
        /// The largest per-cell weight sum found.
        max_weight_sum: f64,
        /// The threshold in force.
        threshold: f64,
        /// The kernel scale in force, metres.
        sigma_m: f64,
    },

    /// Cells passed the threshold, but no sample has one within its search square.
    #[error(
        "no sample found a kept cell within its search square (ring_search_max = {ring_search_max}): \
         raise `ring_search_max`, or lower `threshold` / raise `sigma_m` so that cells nearer the samples \
         are kept"
    )]
    NoSampleLinked {
        /// The last search ring in force.
        ring_search_max: u32,
    },

    /// A problem is larger than the index types can address.
    #[error("problem too large: {what} = {value} exceeds the limit {limit}")]
    TooLarge {
        /// What overflowed.
        what: &'static str,
        /// Its size.
        value: u64,
        /// The largest size supported.
        limit: u64,
    },

    /// A device was requested that this build or this machine cannot provide.
    #[error("device unavailable: {0}")]
    DeviceUnavailable(String),

    /// A CUDA operation failed on the GPU (out of memory, a failed launch or copy).
    #[error("CUDA error: {0}")]
    Cuda(String),

    /// Another rank of an MPI communicator failed in a collective call (feature `mpi`): the rank
    /// and its message. The call failed on every rank.
    #[error("rank {rank} of the communicator failed: {message}")]
    OtherRank {
        /// The lowest rank that failed.
        rank: usize,
        /// Its error message.
        message: String,
    },

    /// The caller's [`crate::FitOptions::interrupt`] check stopped the fit between two iterations.
    #[error("the fit was interrupted (by the caller's check between CG iterations)")]
    Interrupted,

    /// Reading or writing a file failed (the operating system's message).
    #[error("{path}: {message}")]
    Io {
        /// The file (`<stream>` for a reader or writer).
        path: String,
        /// What the operating system said.
        message: String,
    },

    /// A saved operator cannot be loaded: not an operator file, another format version or float
    /// type, a damaged or truncated file (the message says which).
    #[error("cannot load the operator: {0}")]
    BadOperatorFile(String),

    /// The worker thread pool could not be created.
    #[error("could not create a thread pool with {threads} threads: {message}")]
    ThreadPool {
        /// The requested number of threads.
        threads: usize,
        /// The message of the underlying error.
        message: String,
    },
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn param(name: &'static str, value: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        Error::InvalidParameter { name, value: value.to_string(), reason: reason.into() }
    }
}
