"""
    HealpixPsf

Julia bindings of healpix-psf through its C ABI (`include/healpix_psf.h`): regrid lon/lat samples onto
HEALPix cells with a Gaussian point-spread kernel and fit the field by conjugate gradient.

Two layers: the raw `ccall` wrappers (`hpsf_*`, one per C function, same arguments) and a friendly
layer (`Operator`, `fit`, `resample`, `cell_ids`) that frees the operator in a finalizer and throws
`HpsfError` on failure. Julia is column-major: `B` rows of `N` sample values are an `N×B` matrix and
the fitted field a `K×B` matrix -- the C library's row-major `B×N` / `B×K` layout.

The library is found as `libhealpix_psf` on the loader path, or at `ENV["HEALPIX_PSF_LIB"]`.

```julia
using HealpixPsf
op = Operator(lon, lat; level = 10)                 # Float64; Operator{Float32}(...) for single
hval = fit(op, val; lam = 1e-2)                      # val: N×B (NaN = missing) -> K×B
back = resample(op, hval)                            # N×B
ids = cell_ids(op)
```
"""
module HealpixPsf

export Operator, fit, resample, cell_ids, save, keep_blocks!, HpsfError

const libhpsf = get(ENV, "HEALPIX_PSF_LIB", "libhealpix_psf")

# ---- statuses (hpsf_status) -------------------------------------------------------------------
const HPSF_STATUS_OK = Cint(0)
const STATUS_NAMES = ["NULL_POINTER", "EMPTY_INPUT", "LENGTH_MISMATCH", "INVALID_COORDINATE",
                      "INVALID_PARAMETER", "INVALID_VALUE", "NO_CELL_PASSED_THRESHOLD", "NO_SAMPLE_LINKED",
                      "TOO_LARGE", "DEVICE_UNAVAILABLE", "CUDA", "THREAD_POOL", "PANIC",
                      "OTHER_RANK", "INTERRUPTED", "IO", "BAD_OPERATOR_FILE"]

# ---- the C structs (same fields, order and types as include/healpix_psf.h) ----------------------
struct HpsfParams
    size::Csize_t
    level::Int32
    npt::Csize_t
    sigma_m::Float64
    threshold::Float64
    nest::Int32
    radius::Float64
    ellipsoid::Int32
    ring_weight::Int32
    ring_search_init::Int32
    ring_search_max::Int32
    num_threads::Csize_t
    verbose::Int32
    device::Int32
    area_mode::Int32
    area::Ptr{Float64}
    area_len::Csize_t
    out_cell_ids::Ptr{Int64}
    out_cell_ids_len::Csize_t
    fill_missing_out_cells::Int32
    sample_mask::Ptr{UInt8}
    sample_mask_len::Csize_t
end

struct HpsfFitOptions
    size::Csize_t
    lam::Float64
    max_iter::Csize_t
    tol::Float64
    stopping::Int32
    lower_mode::Int32
    lower::Float64
    upper_mode::Int32
    upper::Float64
    max_outer::Csize_t
    conservative::Int32
    empty_cells::Int32
    progress::Int32
    missing::Int32
end

struct HpsfFitInfo
    size::Csize_t
    iterations::Csize_t
    rows::Csize_t
    rows_converged::Csize_t
    rows_without_data::Csize_t
    capacity::Csize_t
    row_iterations::Ptr{Csize_t}
    converged::Ptr{Int32}
    residual_norms::Ptr{Float64}
    norms_stride::Csize_t
    outer_passes::Csize_t
    n_clipped_low::Ptr{Csize_t}
    n_clipped_high::Ptr{Csize_t}
    empty_cells::Ptr{Csize_t}
    residual_rms::Ptr{Float64}
    residual_max::Ptr{Float64}
end

# ---- raw wrappers: one per C function ---------------------------------------------------------
hpsf_params_init(params, level) = ccall((:hpsf_params_init, libhpsf), Cint, (Ptr{HpsfParams}, Int32), params, level)
hpsf_fit_options_init(options) = ccall((:hpsf_fit_options_init, libhpsf), Cint, (Ptr{HpsfFitOptions},), options)
hpsf_fit_info_init(info) = ccall((:hpsf_fit_info_init, libhpsf), Cint, (Ptr{HpsfFitInfo},), info)
hpsf_version() = ccall((:hpsf_version, libhpsf), Cstring, ())
hpsf_has_cuda() = ccall((:hpsf_has_cuda, libhpsf), Int32, ())
hpsf_last_error() = ccall((:hpsf_last_error, libhpsf), Cstring, ())
hpsf_saved_precision(path, out) = ccall((:hpsf_saved_precision, libhpsf), Cint, (Cstring, Ptr{Int32}), path, out)
hpsf_save_f64(op, path) = ccall((:hpsf_save_f64, libhpsf), Cint, (Ptr{Cvoid}, Cstring), op, path)
hpsf_load_f64(path, device, num_threads, out) = ccall((:hpsf_load_f64, libhpsf), Cint, (Cstring, Int32, Csize_t, Ptr{Ptr{Cvoid}}), path, device, num_threads, out)
hpsf_save_f32(op, path) = ccall((:hpsf_save_f32, libhpsf), Cint, (Ptr{Cvoid}, Cstring), op, path)
hpsf_load_f32(path, device, num_threads, out) = ccall((:hpsf_load_f32, libhpsf), Cint, (Cstring, Int32, Csize_t, Ptr{Ptr{Cvoid}}), path, device, num_threads, out)
hpsf_new_f64(lon, lat, n, params, out) = ccall((:hpsf_new_f64, libhpsf), Cint, (Ptr{Float64}, Ptr{Float64}, Csize_t, Ptr{HpsfParams}, Ptr{Ptr{Cvoid}}), lon, lat, n, params, out)
hpsf_free_f64(op) = ccall((:hpsf_free_f64, libhpsf), Cvoid, (Ptr{Cvoid},), op)
hpsf_n_f64(op, out) = ccall((:hpsf_n_f64, libhpsf), Cint, (Ptr{Cvoid}, Ptr{Csize_t}), op, out)
hpsf_k_f64(op, out) = ccall((:hpsf_k_f64, libhpsf), Cint, (Ptr{Cvoid}, Ptr{Csize_t}), op, out)
hpsf_npt_f64(op, out) = ccall((:hpsf_npt_f64, libhpsf), Cint, (Ptr{Cvoid}, Ptr{Csize_t}), op, out)
hpsf_nnz_f64(op, out) = ccall((:hpsf_nnz_f64, libhpsf), Cint, (Ptr{Cvoid}, Ptr{Csize_t}), op, out)
hpsf_device_f64(op, out) = ccall((:hpsf_device_f64, libhpsf), Cint, (Ptr{Cvoid}, Ptr{Int32}), op, out)
hpsf_cell_ids_f64(op, out, len) = ccall((:hpsf_cell_ids_f64, libhpsf), Cint, (Ptr{Cvoid}, Ptr{UInt64}, Csize_t), op, out, len)
hpsf_hi_f64(op, out, len) = ccall((:hpsf_hi_f64, libhpsf), Cint, (Ptr{Cvoid}, Ptr{Int32}, Csize_t), op, out, len)
hpsf_d_m_f64(op, out, len) = ccall((:hpsf_d_m_f64, libhpsf), Cint, (Ptr{Cvoid}, Ptr{Float64}, Csize_t), op, out, len)
hpsf_cell_weight_f64(op, out, len) = ccall((:hpsf_cell_weight_f64, libhpsf), Cint, (Ptr{Cvoid}, Ptr{Float64}, Csize_t), op, out, len)
hpsf_cell_sample_counts_f64(op, out, len) = ccall((:hpsf_cell_sample_counts_f64, libhpsf), Cint, (Ptr{Cvoid}, Ptr{UInt32}, Csize_t), op, out, len)
hpsf_fit_f64(op, val, val_len, options, x0, x0_len, hval, hval_len, info) = ccall((:hpsf_fit_f64, libhpsf), Cint, (Ptr{Cvoid}, Ptr{Float64}, Csize_t, Ptr{HpsfFitOptions}, Ptr{Float64}, Csize_t, Ptr{Float64}, Csize_t, Ptr{HpsfFitInfo}), op, val, val_len, options, x0, x0_len, hval, hval_len, info)
hpsf_keep_blocks_f64(op, keep, kept_bytes) = ccall((:hpsf_keep_blocks_f64, libhpsf), Cint, (Ptr{Cvoid}, Int32, Ptr{Csize_t}), op, keep, kept_bytes)
hpsf_resample_f64(op, hval, hval_len, out, out_len) = ccall((:hpsf_resample_f64, libhpsf), Cint, (Ptr{Cvoid}, Ptr{Float64}, Csize_t, Ptr{Float64}, Csize_t), op, hval, hval_len, out, out_len)
hpsf_fit_resample_f64(op, val, val_len, options, x0, x0_len, hval, hval_len, resampled, resampled_len, info) = ccall((:hpsf_fit_resample_f64, libhpsf), Cint, (Ptr{Cvoid}, Ptr{Float64}, Csize_t, Ptr{HpsfFitOptions}, Ptr{Float64}, Csize_t, Ptr{Float64}, Csize_t, Ptr{Float64}, Csize_t, Ptr{HpsfFitInfo}), op, val, val_len, options, x0, x0_len, hval, hval_len, resampled, resampled_len, info)
hpsf_new_f32(lon, lat, n, params, out) = ccall((:hpsf_new_f32, libhpsf), Cint, (Ptr{Float64}, Ptr{Float64}, Csize_t, Ptr{HpsfParams}, Ptr{Ptr{Cvoid}}), lon, lat, n, params, out)
hpsf_free_f32(op) = ccall((:hpsf_free_f32, libhpsf), Cvoid, (Ptr{Cvoid},), op)
hpsf_n_f32(op, out) = ccall((:hpsf_n_f32, libhpsf), Cint, (Ptr{Cvoid}, Ptr{Csize_t}), op, out)
hpsf_k_f32(op, out) = ccall((:hpsf_k_f32, libhpsf), Cint, (Ptr{Cvoid}, Ptr{Csize_t}), op, out)
hpsf_npt_f32(op, out) = ccall((:hpsf_npt_f32, libhpsf), Cint, (Ptr{Cvoid}, Ptr{Csize_t}), op, out)
hpsf_nnz_f32(op, out) = ccall((:hpsf_nnz_f32, libhpsf), Cint, (Ptr{Cvoid}, Ptr{Csize_t}), op, out)
hpsf_device_f32(op, out) = ccall((:hpsf_device_f32, libhpsf), Cint, (Ptr{Cvoid}, Ptr{Int32}), op, out)
hpsf_cell_ids_f32(op, out, len) = ccall((:hpsf_cell_ids_f32, libhpsf), Cint, (Ptr{Cvoid}, Ptr{UInt64}, Csize_t), op, out, len)
hpsf_hi_f32(op, out, len) = ccall((:hpsf_hi_f32, libhpsf), Cint, (Ptr{Cvoid}, Ptr{Int32}, Csize_t), op, out, len)
hpsf_d_m_f32(op, out, len) = ccall((:hpsf_d_m_f32, libhpsf), Cint, (Ptr{Cvoid}, Ptr{Float32}, Csize_t), op, out, len)
hpsf_cell_weight_f32(op, out, len) = ccall((:hpsf_cell_weight_f32, libhpsf), Cint, (Ptr{Cvoid}, Ptr{Float32}, Csize_t), op, out, len)
hpsf_cell_sample_counts_f32(op, out, len) = ccall((:hpsf_cell_sample_counts_f32, libhpsf), Cint, (Ptr{Cvoid}, Ptr{UInt32}, Csize_t), op, out, len)
hpsf_fit_f32(op, val, val_len, options, x0, x0_len, hval, hval_len, info) = ccall((:hpsf_fit_f32, libhpsf), Cint, (Ptr{Cvoid}, Ptr{Float32}, Csize_t, Ptr{HpsfFitOptions}, Ptr{Float32}, Csize_t, Ptr{Float32}, Csize_t, Ptr{HpsfFitInfo}), op, val, val_len, options, x0, x0_len, hval, hval_len, info)
hpsf_keep_blocks_f32(op, keep, kept_bytes) = ccall((:hpsf_keep_blocks_f32, libhpsf), Cint, (Ptr{Cvoid}, Int32, Ptr{Csize_t}), op, keep, kept_bytes)
hpsf_resample_f32(op, hval, hval_len, out, out_len) = ccall((:hpsf_resample_f32, libhpsf), Cint, (Ptr{Cvoid}, Ptr{Float32}, Csize_t, Ptr{Float32}, Csize_t), op, hval, hval_len, out, out_len)
hpsf_fit_resample_f32(op, val, val_len, options, x0, x0_len, hval, hval_len, resampled, resampled_len, info) = ccall((:hpsf_fit_resample_f32, libhpsf), Cint, (Ptr{Cvoid}, Ptr{Float32}, Csize_t, Ptr{HpsfFitOptions}, Ptr{Float32}, Csize_t, Ptr{Float32}, Csize_t, Ptr{Float32}, Csize_t, Ptr{HpsfFitInfo}), op, val, val_len, options, x0, x0_len, hval, hval_len, resampled, resampled_len, info)

# ---- the friendly layer ------------------------------------------------------------------------

"""A failed call: the `hpsf_status` code, its name and the library's message."""
struct HpsfError <: Exception
    status::Cint
    message::String
end

Base.showerror(io::IO, e::HpsfError) =
    print(io, "healpix-psf error ", 1 <= e.status <= length(STATUS_NAMES) ? STATUS_NAMES[e.status] : string(e.status),
          ": ", e.message)

check(status::Cint) = status == HPSF_STATUS_OK ? nothing : throw(HpsfError(status, unsafe_string(hpsf_last_error())))

"""An operator built from samples; freed by a finalizer (or `close(op)`)."""
mutable struct Operator{T<:Union{Float32,Float64}}
    handle::Ptr{Cvoid}
end

_free(::Type{Float64}, h) = hpsf_free_f64(h)
_free(::Type{Float32}, h) = hpsf_free_f32(h)

function Base.close(op::Operator{T}) where {T}
    _free(T, op.handle)
    op.handle = C_NULL
    return nothing
end

"""
    Operator{T}(lon, lat; level, npt = 9, sigma_m = 0, threshold = 0.1, nest = true, radius = 6371000,
                sphere = false, num_threads = 0, device = -1, mask = nothing)

Builds the PSF operator of the samples (degrees). `sigma_m = 0` means the cell size; `device = -1` is
the CPU, `n >= 0` CUDA device `n`. `mask` (one Bool per sample) builds the operator from the samples
marked `true` only, e.g. `mask = vec(any(!isnan, val; dims = 2))` for a land mask (val N×B); fits
ignore the others and `resample` gives them NaN.
"""
function Operator{T}(lon::AbstractVector{<:Real}, lat::AbstractVector{<:Real}; level::Integer, npt::Integer = 9,
                     sigma_m::Real = 0.0, threshold::Real = 0.1, nest::Bool = true, radius::Real = 6371000.0,
                     sphere::Bool = false, num_threads::Integer = 0, device::Integer = -1,
                     mask::Union{Nothing,AbstractVector{Bool}} = nothing) where {T<:Union{Float32,Float64}}
    length(lon) == length(lat) || throw(DimensionMismatch("lon has $(length(lon)) values, lat $(length(lat))"))
    r = Ref{HpsfParams}()
    check(hpsf_params_init(r, Int32(level)))
    d = r[]
    m = mask === nothing ? UInt8[] : Vector{UInt8}(mask)
    lo, la = Vector{Float64}(lon), Vector{Float64}(lat)
    out = Ref{Ptr{Cvoid}}(C_NULL)
    new = T === Float64 ? hpsf_new_f64 : hpsf_new_f32
    GC.@preserve m begin
        p = HpsfParams(d.size, d.level, Csize_t(npt), Float64(sigma_m), Float64(threshold), Int32(nest),
                       Float64(radius), Int32(sphere), d.ring_weight, d.ring_search_init, d.ring_search_max,
                       Csize_t(num_threads), d.verbose, Int32(device), d.area_mode, d.area, d.area_len,
                       d.out_cell_ids, d.out_cell_ids_len, d.fill_missing_out_cells,
                       mask === nothing ? Ptr{UInt8}(C_NULL) : pointer(m), Csize_t(length(m)))
        check(new(lo, la, Csize_t(length(lo)), Ref(p), out))
    end
    op = Operator{T}(out[])
    finalizer(close, op)
    return op
end
Operator(lon, lat; kwargs...) = Operator{Float64}(lon, lat; kwargs...)

"""
    save(op, path)

Saves the operator into the file `path` (the library's versioned binary format, written whole or not
at all); `Operator(path)` loads it in another run or process.
"""
function save(op::Operator{T}, path::AbstractString) where {T}
    check((T === Float64 ? hpsf_save_f64 : hpsf_save_f32)(op.handle, path))
    return path
end

"""
    Operator(path; device = -1, num_threads = 0) -> Operator{Float32} or Operator{Float64}

Loads an operator saved by `save`, in the precision it was saved in. A file of another format
version, damaged or truncated throws an `HpsfError` (`BAD_OPERATOR_FILE`).
"""
function Operator(path::AbstractString; device::Integer = -1, num_threads::Integer = 0)
    bytes = Ref{Int32}(0)
    check(hpsf_saved_precision(path, bytes))
    T = bytes[] == 4 ? Float32 : Float64
    out = Ref{Ptr{Cvoid}}(C_NULL)
    check((T === Float64 ? hpsf_load_f64 : hpsf_load_f32)(path, Int32(device), Csize_t(num_threads), out))
    op = Operator{T}(out[])
    finalizer(close, op)
    return op
end

_size(f, op) = (n = Ref{Csize_t}(0); check(f(op.handle, n)); Int(n[]))
nsamples(op::Operator{Float64}) = _size(hpsf_n_f64, op)
nsamples(op::Operator{Float32}) = _size(hpsf_n_f32, op)
ncells(op::Operator{Float64}) = _size(hpsf_k_f64, op)
ncells(op::Operator{Float32}) = _size(hpsf_k_f32, op)

"""The K HEALPix cell ids (ascending)."""
function cell_ids(op::Operator{T}) where {T}
    ids = Vector{UInt64}(undef, ncells(op))
    f = T === Float64 ? hpsf_cell_ids_f64 : hpsf_cell_ids_f32
    check(f(op.handle, ids, Csize_t(length(ids))))
    return ids
end

"""
    fit(op, val; lam = 0, max_iter = 100, tol = 1e-8, per_row = false, lower = nothing, upper = nothing,
        conservative = false, zero_fill = false) -> K×B matrix

Fits the cell field of `val` (`N×B`, or a vector of `N`; NaN = missing). `lower`/`upper`: `nothing`
(no bound), a number, or `:input` (each row's valid range), imposed inside the fit; `conservative`
keeps each row's area-weighted mean exactly. A sample missing in a row is left out of that row's
problem (`zero_fill = true`: counted as 0, the reference's behaviour). Cells without any valid sample
come out NaN.
"""
function fit(op::Operator{T}, val::AbstractVecOrMat; lam::Real = 0.0, max_iter::Integer = 100, tol::Real = 1e-8,
             per_row::Bool = false, lower = nothing, upper = nothing, conservative::Bool = false,
             zero_fill::Bool = false) where {T}
    v = Matrix{T}(reshape(val, size(val, 1), :))
    r = Ref{HpsfFitOptions}()
    check(hpsf_fit_options_init(r))
    d = r[]
    mode(b) = b === nothing ? Int32(0) : b === :input ? Int32(2) : Int32(1)
    num(b) = b isa Real ? Float64(b) : 0.0
    o = HpsfFitOptions(d.size, Float64(lam), Csize_t(max_iter), Float64(tol), Int32(per_row), mode(lower), num(lower),
                       mode(upper), num(upper), d.max_outer, Int32(conservative), d.empty_cells,
                       d.progress, Int32(zero_fill))
    hval = Matrix{T}(undef, ncells(op), size(v, 2))
    f = T === Float64 ? hpsf_fit_f64 : hpsf_fit_f32
    check(f(op.handle, v, Csize_t(length(v)), Ref(o), Ptr{T}(C_NULL), Csize_t(0), hval, Csize_t(length(hval)),
            Ptr{HpsfFitInfo}(C_NULL)))
    return val isa AbstractVector ? vec(hval) : hval
end

"""
    keep_blocks!(op, keep::Bool) -> bytes held

`true`: the operator keeps the large working blocks of its fits and resamples for the next call (a
series of calls of one shape then makes them once, and it holds about one call's working memory
between calls); `false` (the default) gives them back at once. Results are the same bit for bit.
"""
function keep_blocks!(op::Operator{T}, keep::Bool) where {T}
    held = Ref{Csize_t}(0)
    f = T === Float64 ? hpsf_keep_blocks_f64 : hpsf_keep_blocks_f32
    check(f(op.handle, Int32(keep), held))
    return Int(held[])
end

"""
    resample(op, hval) -> N×B matrix

The values at the samples of cell fields `hval` (`K×B`, or a vector of `K`).
"""
function resample(op::Operator{T}, hval::AbstractVecOrMat) where {T}
    h = Matrix{T}(reshape(hval, size(hval, 1), :))
    out = Matrix{T}(undef, nsamples(op), size(h, 2))
    f = T === Float64 ? hpsf_resample_f64 : hpsf_resample_f32
    check(f(op.handle, h, Csize_t(length(h)), out, Csize_t(length(out))))
    return hval isa AbstractVector ? vec(out) : out
end

end # module
