! Fortran interface to healpix-psf (the C ABI of include/healpix_psf.h).
!
! Two layers:
!  * raw bind(c) interfaces, one per C function (hpsf_*), and the bind(c) structs hpsf_params,
!    hpsf_fit_options, hpsf_fit_info;
!  * friendly double-precision wrappers: type(psf_operator) holds the handle and frees it in its
!    final procedure; every function returns an integer status (HPSF_OK = 0) -- the
!    `call check(...)` idiom -- and hpsf_message() returns the message of the last failure.
!
! Layout: Fortran is column-major, so B rows of N sample values are val(N, B) and B rows of K cell
! values are hval(K, B); this is exactly the C library's row-major B x N layout. Nothing here calls
! `stop`: errors are statuses.
!
!   use healpix_psf
!   type(psf_operator) :: op
!   type(hpsf_params)  :: p
!   call check(psf_params_default(p, 10))
!   p%npt = 9
!   call check(psf_new(op, lon, lat, p))
!   allocate(hval(op%n_cells(), size(val, 2)))
!   call check(psf_fit(op, val, hval, lam=1d-2))
!   call check(psf_resample(op, hval, back))
module healpix_psf
  use, intrinsic :: iso_c_binding
  implicit none
  private

  ! ---- statuses (hpsf_status) ----
  integer, parameter, public :: HPSF_OK = 0, HPSF_NULL_POINTER = 1, HPSF_EMPTY_INPUT = 2, &
       HPSF_LENGTH_MISMATCH = 3, HPSF_INVALID_COORDINATE = 4, HPSF_INVALID_PARAMETER = 5, &
       HPSF_INVALID_VALUE = 6, HPSF_NO_CELL_PASSED_THRESHOLD = 7, HPSF_NO_SAMPLE_LINKED = 8, &
       HPSF_TOO_LARGE = 9, HPSF_DEVICE_UNAVAILABLE = 10, HPSF_CUDA = 11, HPSF_THREAD_POOL = 12, &
       HPSF_PANIC = 13, HPSF_OTHER_RANK = 14, HPSF_INTERRUPTED = 15, HPSF_IO = 16, &
       HPSF_BAD_OPERATOR_FILE = 17

  ! ---- the C structs (same fields and order as include/healpix_psf.h) ----
  type, bind(c), public :: hpsf_params
     integer(c_size_t) :: size
     integer(c_int32_t) :: level
     integer(c_size_t) :: npt
     real(c_double) :: sigma_m
     real(c_double) :: threshold
     integer(c_int32_t) :: nest
     real(c_double) :: radius
     integer(c_int32_t) :: ellipsoid
     integer(c_int32_t) :: ring_weight
     integer(c_int32_t) :: ring_search_init
     integer(c_int32_t) :: ring_search_max
     integer(c_size_t) :: num_threads
     integer(c_int32_t) :: verbose
     integer(c_int32_t) :: device
     integer(c_int32_t) :: area_mode
     type(c_ptr) :: area
     integer(c_size_t) :: area_len
     type(c_ptr) :: out_cell_ids
     integer(c_size_t) :: out_cell_ids_len
     integer(c_int32_t) :: fill_missing_out_cells
     type(c_ptr) :: sample_mask
     integer(c_size_t) :: sample_mask_len
  end type hpsf_params

  type, bind(c), public :: hpsf_fit_options
     integer(c_size_t) :: size
     real(c_double) :: lam
     integer(c_size_t) :: max_iter
     real(c_double) :: tol
     integer(c_int32_t) :: stopping
     integer(c_int32_t) :: lower_mode
     real(c_double) :: lower
     integer(c_int32_t) :: upper_mode
     real(c_double) :: upper
     integer(c_size_t) :: max_outer
     integer(c_int32_t) :: conservative
     integer(c_int32_t) :: empty_cells
     integer(c_int32_t) :: progress
     integer(c_int32_t) :: missing
  end type hpsf_fit_options

  type, bind(c), public :: hpsf_fit_info
     integer(c_size_t) :: size
     integer(c_size_t) :: iterations
     integer(c_size_t) :: rows
     integer(c_size_t) :: rows_converged
     integer(c_size_t) :: rows_without_data
     integer(c_size_t) :: capacity
     type(c_ptr) :: row_iterations
     type(c_ptr) :: converged
     type(c_ptr) :: residual_norms
     integer(c_size_t) :: norms_stride
     integer(c_size_t) :: outer_passes
     type(c_ptr) :: n_clipped_low
     type(c_ptr) :: n_clipped_high
     type(c_ptr) :: empty_cells
     type(c_ptr) :: residual_rms
     type(c_ptr) :: residual_max
  end type hpsf_fit_info

  ! ---- raw interfaces ----
  public :: hpsf_params_init, hpsf_fit_options_init, hpsf_fit_info_init, hpsf_version, hpsf_has_cuda, &
       hpsf_last_error, hpsf_new_f64, hpsf_free_f64, hpsf_n_f64, hpsf_k_f64, hpsf_npt_f64, hpsf_nnz_f64, &
       hpsf_device_f64, hpsf_cell_ids_f64, hpsf_hi_f64, hpsf_d_m_f64, hpsf_cell_weight_f64, &
       hpsf_cell_sample_counts_f64, hpsf_fit_f64, &
       hpsf_resample_f64, hpsf_fit_resample_f64, hpsf_new_f32, hpsf_free_f32, hpsf_n_f32, hpsf_k_f32, &
       hpsf_npt_f32, hpsf_nnz_f32, hpsf_device_f32, hpsf_cell_ids_f32, hpsf_hi_f32, hpsf_d_m_f32, &
       hpsf_cell_weight_f32, hpsf_cell_sample_counts_f32, hpsf_fit_f32, hpsf_resample_f32, hpsf_fit_resample_f32, &
       hpsf_keep_blocks_f64, hpsf_keep_blocks_f32

  interface
     integer(c_int) function hpsf_params_init(params, level) bind(c, name="hpsf_params_init")
       import :: c_int, c_int32_t, hpsf_params
       type(hpsf_params), intent(out) :: params
       integer(c_int32_t), value :: level
     end function hpsf_params_init
     integer(c_int) function hpsf_fit_options_init(options) bind(c, name="hpsf_fit_options_init")
       import :: c_int, hpsf_fit_options
       type(hpsf_fit_options), intent(out) :: options
     end function hpsf_fit_options_init
     integer(c_int) function hpsf_fit_info_init(info) bind(c, name="hpsf_fit_info_init")
       import :: c_int, hpsf_fit_info
       type(hpsf_fit_info), intent(out) :: info
     end function hpsf_fit_info_init
     type(c_ptr) function hpsf_version() bind(c, name="hpsf_version")
       import :: c_ptr
     end function hpsf_version
     integer(c_int32_t) function hpsf_has_cuda() bind(c, name="hpsf_has_cuda")
       import :: c_int32_t
     end function hpsf_has_cuda
     type(c_ptr) function hpsf_last_error() bind(c, name="hpsf_last_error")
       import :: c_ptr
     end function hpsf_last_error

     ! double precision
     integer(c_int) function hpsf_new_f64(lon, lat, n, params, out) bind(c, name="hpsf_new_f64")
       import :: c_int, c_double, c_size_t, c_ptr, hpsf_params
       real(c_double), intent(in) :: lon(*), lat(*)
       integer(c_size_t), value :: n
       type(hpsf_params), intent(in) :: params
       type(c_ptr), intent(inout) :: out
     end function hpsf_new_f64
     subroutine hpsf_free_f64(op) bind(c, name="hpsf_free_f64")
       import :: c_ptr
       type(c_ptr), value :: op
     end subroutine hpsf_free_f64
     integer(c_int) function hpsf_n_f64(op, out) bind(c, name="hpsf_n_f64")
       import :: c_int, c_ptr, c_size_t
       type(c_ptr), value :: op
       integer(c_size_t), intent(out) :: out
     end function hpsf_n_f64
     integer(c_int) function hpsf_k_f64(op, out) bind(c, name="hpsf_k_f64")
       import :: c_int, c_ptr, c_size_t
       type(c_ptr), value :: op
       integer(c_size_t), intent(out) :: out
     end function hpsf_k_f64
     integer(c_int) function hpsf_npt_f64(op, out) bind(c, name="hpsf_npt_f64")
       import :: c_int, c_ptr, c_size_t
       type(c_ptr), value :: op
       integer(c_size_t), intent(out) :: out
     end function hpsf_npt_f64
     integer(c_int) function hpsf_nnz_f64(op, out) bind(c, name="hpsf_nnz_f64")
       import :: c_int, c_ptr, c_size_t
       type(c_ptr), value :: op
       integer(c_size_t), intent(out) :: out
     end function hpsf_nnz_f64
     integer(c_int) function hpsf_device_f64(op, out) bind(c, name="hpsf_device_f64")
       import :: c_int, c_ptr, c_int32_t
       type(c_ptr), value :: op
       integer(c_int32_t), intent(out) :: out
     end function hpsf_device_f64
     integer(c_int) function hpsf_cell_ids_f64(op, out, len) bind(c, name="hpsf_cell_ids_f64")
       import :: c_int, c_ptr, c_int64_t, c_size_t
       type(c_ptr), value :: op
       integer(c_int64_t), intent(out) :: out(*)
       integer(c_size_t), value :: len
     end function hpsf_cell_ids_f64
     integer(c_int) function hpsf_hi_f64(op, out, len) bind(c, name="hpsf_hi_f64")
       import :: c_int, c_ptr, c_int32_t, c_size_t
       type(c_ptr), value :: op
       integer(c_int32_t), intent(out) :: out(*)
       integer(c_size_t), value :: len
     end function hpsf_hi_f64
     integer(c_int) function hpsf_d_m_f64(op, out, len) bind(c, name="hpsf_d_m_f64")
       import :: c_int, c_ptr, c_double, c_size_t
       type(c_ptr), value :: op
       real(c_double), intent(out) :: out(*)
       integer(c_size_t), value :: len
     end function hpsf_d_m_f64
     integer(c_int) function hpsf_cell_weight_f64(op, out, len) bind(c, name="hpsf_cell_weight_f64")
       import :: c_int, c_ptr, c_double, c_size_t
       type(c_ptr), value :: op
       real(c_double), intent(out) :: out(*)
       integer(c_size_t), value :: len
     end function hpsf_cell_weight_f64
     integer(c_int) function hpsf_cell_sample_counts_f64(op, out, len) bind(c, name="hpsf_cell_sample_counts_f64")
       import :: c_int, c_ptr, c_double, c_size_t, c_int32_t
       type(c_ptr), value :: op
       integer(c_int32_t), intent(out) :: out(*)
       integer(c_size_t), value :: len
     end function hpsf_cell_sample_counts_f64
     integer(c_int) function hpsf_fit_f64(op, val, val_len, options, x0, x0_len, hval, hval_len, info) &
          bind(c, name="hpsf_fit_f64")
       import :: c_int, c_ptr, c_double, c_size_t, hpsf_fit_options
       type(c_ptr), value :: op
       real(c_double), intent(in) :: val(*)
       integer(c_size_t), value :: val_len
       type(hpsf_fit_options), intent(in) :: options
       type(c_ptr), value :: x0
       integer(c_size_t), value :: x0_len
       real(c_double), intent(inout) :: hval(*)
       integer(c_size_t), value :: hval_len
       type(c_ptr), value :: info
     end function hpsf_fit_f64
     integer(c_int) function hpsf_keep_blocks_f64(op, keep, kept_bytes) bind(c, name="hpsf_keep_blocks_f64")
       import :: c_int, c_int32_t, c_ptr
       type(c_ptr), value :: op
       integer(c_int32_t), value :: keep
       type(c_ptr), value :: kept_bytes
     end function hpsf_keep_blocks_f64
     integer(c_int) function hpsf_resample_f64(op, hval, hval_len, out, out_len) bind(c, name="hpsf_resample_f64")
       import :: c_int, c_ptr, c_double, c_size_t
       type(c_ptr), value :: op
       real(c_double), intent(in) :: hval(*)
       integer(c_size_t), value :: hval_len
       real(c_double), intent(inout) :: out(*)
       integer(c_size_t), value :: out_len
     end function hpsf_resample_f64
     integer(c_int) function hpsf_fit_resample_f64(op, val, val_len, options, x0, x0_len, hval, hval_len, &
          resampled, resampled_len, info) bind(c, name="hpsf_fit_resample_f64")
       import :: c_int, c_ptr, c_double, c_size_t, hpsf_fit_options
       type(c_ptr), value :: op
       real(c_double), intent(in) :: val(*)
       integer(c_size_t), value :: val_len
       type(hpsf_fit_options), intent(in) :: options
       type(c_ptr), value :: x0
       integer(c_size_t), value :: x0_len
       real(c_double), intent(inout) :: hval(*)
       integer(c_size_t), value :: hval_len
       real(c_double), intent(inout) :: resampled(*)
       integer(c_size_t), value :: resampled_len
       type(c_ptr), value :: info
     end function hpsf_fit_resample_f64

     ! single precision (same arguments, real(c_float) values; lon/lat stay double)
     integer(c_int) function hpsf_new_f32(lon, lat, n, params, out) bind(c, name="hpsf_new_f32")
       import :: c_int, c_double, c_size_t, c_ptr, hpsf_params
       real(c_double), intent(in) :: lon(*), lat(*)
       integer(c_size_t), value :: n
       type(hpsf_params), intent(in) :: params
       type(c_ptr), intent(inout) :: out
     end function hpsf_new_f32
     subroutine hpsf_free_f32(op) bind(c, name="hpsf_free_f32")
       import :: c_ptr
       type(c_ptr), value :: op
     end subroutine hpsf_free_f32
     integer(c_int) function hpsf_n_f32(op, out) bind(c, name="hpsf_n_f32")
       import :: c_int, c_ptr, c_size_t
       type(c_ptr), value :: op
       integer(c_size_t), intent(out) :: out
     end function hpsf_n_f32
     integer(c_int) function hpsf_k_f32(op, out) bind(c, name="hpsf_k_f32")
       import :: c_int, c_ptr, c_size_t
       type(c_ptr), value :: op
       integer(c_size_t), intent(out) :: out
     end function hpsf_k_f32
     integer(c_int) function hpsf_npt_f32(op, out) bind(c, name="hpsf_npt_f32")
       import :: c_int, c_ptr, c_size_t
       type(c_ptr), value :: op
       integer(c_size_t), intent(out) :: out
     end function hpsf_npt_f32
     integer(c_int) function hpsf_nnz_f32(op, out) bind(c, name="hpsf_nnz_f32")
       import :: c_int, c_ptr, c_size_t
       type(c_ptr), value :: op
       integer(c_size_t), intent(out) :: out
     end function hpsf_nnz_f32
     integer(c_int) function hpsf_device_f32(op, out) bind(c, name="hpsf_device_f32")
       import :: c_int, c_ptr, c_int32_t
       type(c_ptr), value :: op
       integer(c_int32_t), intent(out) :: out
     end function hpsf_device_f32
     integer(c_int) function hpsf_cell_ids_f32(op, out, len) bind(c, name="hpsf_cell_ids_f32")
       import :: c_int, c_ptr, c_int64_t, c_size_t
       type(c_ptr), value :: op
       integer(c_int64_t), intent(out) :: out(*)
       integer(c_size_t), value :: len
     end function hpsf_cell_ids_f32
     integer(c_int) function hpsf_hi_f32(op, out, len) bind(c, name="hpsf_hi_f32")
       import :: c_int, c_ptr, c_int32_t, c_size_t
       type(c_ptr), value :: op
       integer(c_int32_t), intent(out) :: out(*)
       integer(c_size_t), value :: len
     end function hpsf_hi_f32
     integer(c_int) function hpsf_d_m_f32(op, out, len) bind(c, name="hpsf_d_m_f32")
       import :: c_int, c_ptr, c_float, c_size_t
       type(c_ptr), value :: op
       real(c_float), intent(out) :: out(*)
       integer(c_size_t), value :: len
     end function hpsf_d_m_f32
     integer(c_int) function hpsf_cell_weight_f32(op, out, len) bind(c, name="hpsf_cell_weight_f32")
       import :: c_int, c_ptr, c_float, c_size_t
       type(c_ptr), value :: op
       real(c_float), intent(out) :: out(*)
       integer(c_size_t), value :: len
     end function hpsf_cell_weight_f32
     integer(c_int) function hpsf_cell_sample_counts_f32(op, out, len) bind(c, name="hpsf_cell_sample_counts_f32")
       import :: c_int, c_ptr, c_float, c_size_t, c_int32_t
       type(c_ptr), value :: op
       integer(c_int32_t), intent(out) :: out(*)
       integer(c_size_t), value :: len
     end function hpsf_cell_sample_counts_f32
     integer(c_int) function hpsf_fit_f32(op, val, val_len, options, x0, x0_len, hval, hval_len, info) &
          bind(c, name="hpsf_fit_f32")
       import :: c_int, c_ptr, c_float, c_size_t, hpsf_fit_options
       type(c_ptr), value :: op
       real(c_float), intent(in) :: val(*)
       integer(c_size_t), value :: val_len
       type(hpsf_fit_options), intent(in) :: options
       type(c_ptr), value :: x0
       integer(c_size_t), value :: x0_len
       real(c_float), intent(inout) :: hval(*)
       integer(c_size_t), value :: hval_len
       type(c_ptr), value :: info
     end function hpsf_fit_f32
     integer(c_int) function hpsf_keep_blocks_f32(op, keep, kept_bytes) bind(c, name="hpsf_keep_blocks_f32")
       import :: c_int, c_int32_t, c_ptr
       type(c_ptr), value :: op
       integer(c_int32_t), value :: keep
       type(c_ptr), value :: kept_bytes
     end function hpsf_keep_blocks_f32
     integer(c_int) function hpsf_resample_f32(op, hval, hval_len, out, out_len) bind(c, name="hpsf_resample_f32")
       import :: c_int, c_ptr, c_float, c_size_t
       type(c_ptr), value :: op
       real(c_float), intent(in) :: hval(*)
       integer(c_size_t), value :: hval_len
       real(c_float), intent(inout) :: out(*)
       integer(c_size_t), value :: out_len
     end function hpsf_resample_f32
     integer(c_int) function hpsf_fit_resample_f32(op, val, val_len, options, x0, x0_len, hval, hval_len, &
          resampled, resampled_len, info) bind(c, name="hpsf_fit_resample_f32")
       import :: c_int, c_ptr, c_float, c_size_t, hpsf_fit_options
       type(c_ptr), value :: op
       real(c_float), intent(in) :: val(*)
       integer(c_size_t), value :: val_len
       type(hpsf_fit_options), intent(in) :: options
       type(c_ptr), value :: x0
       integer(c_size_t), value :: x0_len
       real(c_float), intent(inout) :: hval(*)
       integer(c_size_t), value :: hval_len
       real(c_float), intent(inout) :: resampled(*)
       integer(c_size_t), value :: resampled_len
       type(c_ptr), value :: info
     end function hpsf_fit_resample_f32

     integer(c_int) function hpsf_saved_precision(path, out) bind(c, name="hpsf_saved_precision")
       import :: c_int, c_char, c_int32_t
       character(kind=c_char), intent(in) :: path(*)
       integer(c_int32_t), intent(out) :: out
     end function hpsf_saved_precision
     integer(c_int) function hpsf_save_f64(op, path) bind(c, name="hpsf_save_f64")
       import :: c_int, c_ptr, c_char
       type(c_ptr), value :: op
       character(kind=c_char), intent(in) :: path(*)
     end function hpsf_save_f64
     integer(c_int) function hpsf_load_f64(path, device, num_threads, out) bind(c, name="hpsf_load_f64")
       import :: c_int, c_ptr, c_char, c_int32_t, c_size_t
       character(kind=c_char), intent(in) :: path(*)
       integer(c_int32_t), value :: device
       integer(c_size_t), value :: num_threads
       type(c_ptr), intent(out) :: out
     end function hpsf_load_f64
     integer(c_int) function hpsf_save_f32(op, path) bind(c, name="hpsf_save_f32")
       import :: c_int, c_ptr, c_char
       type(c_ptr), value :: op
       character(kind=c_char), intent(in) :: path(*)
     end function hpsf_save_f32
     integer(c_int) function hpsf_load_f32(path, device, num_threads, out) bind(c, name="hpsf_load_f32")
       import :: c_int, c_ptr, c_char, c_int32_t, c_size_t
       character(kind=c_char), intent(in) :: path(*)
       integer(c_int32_t), value :: device
       integer(c_size_t), value :: num_threads
       type(c_ptr), intent(out) :: out
     end function hpsf_load_f32

     integer(c_size_t) function c_strlen(s) bind(c, name="strlen")
       import :: c_ptr, c_size_t
       type(c_ptr), value :: s
     end function c_strlen
  end interface

  ! ---- the friendly layer (double precision) ----
  type, public :: psf_operator
     type(c_ptr) :: handle = c_null_ptr
   contains
     procedure :: n_samples => op_n_samples
     procedure :: n_cells => op_n_cells
     procedure :: free => op_free
     final :: op_final
  end type psf_operator

  public :: psf_params_default, psf_new, psf_fit, psf_resample, psf_keep_blocks, psf_cell_ids, psf_save, psf_load, hpsf_message, &
       psf_version

contains

  !> The defaults at `level` (call before setting fields of `params`).
  integer function psf_params_default(params, level) result(status)
    type(hpsf_params), intent(out) :: params
    integer, intent(in) :: level
    status = hpsf_params_init(params, int(level, c_int32_t))
  end function psf_params_default

  !> Builds `op` from sample longitudes and latitudes (degrees); frees what `op` held before.
  !> Optional `mask` (one per sample): build from the samples marked .true. only, e.g.
  !> `mask = any(val == val, dim=2)` for a land mask; fits ignore the others and psf_resample gives
  !> them NaN.
  integer function psf_new(op, lon, lat, params, mask) result(status)
    type(psf_operator), intent(inout) :: op
    real(c_double), intent(in), contiguous :: lon(:), lat(:)
    type(hpsf_params), intent(in), optional :: params
    logical, intent(in), optional :: mask(:)
    type(hpsf_params) :: p
    type(c_ptr) :: h
    integer(c_int8_t), allocatable, target :: m(:)
    if (size(lon) /= size(lat)) then
       status = HPSF_LENGTH_MISMATCH
       return
    end if
    if (present(params)) then
       p = params
    else
       status = hpsf_params_init(p, 10_c_int32_t)
    end if
    if (present(mask)) then
       m = merge(1_c_int8_t, 0_c_int8_t, mask)
       p%sample_mask = c_loc(m)
       p%sample_mask_len = int(size(m), c_size_t)
    end if
    h = c_null_ptr
    status = hpsf_new_f64(lon, lat, int(size(lon), c_size_t), p, h)
    if (status == HPSF_OK) then
       call op%free()
       op%handle = h
    end if
  end function psf_new

  !> Fits hval(K, B) from val(N, B) (NaN = missing). Optional: lam (0), max_iter (100), tol (1e-8),
  !> per_row stopping (.false.), bounds lower / upper imposed inside the fit (none), conservative
  !> (.false.: keep each row's area-weighted mean exactly), zero_fill (.false.: a sample missing in a
  !> row is left out of that row's problem; .true.: counted as 0, the reference's behaviour), and the
  !> CG iterations run. Cells without any valid sample come out NaN.
  integer function psf_fit(op, val, hval, lam, max_iter, tol, per_row, iterations, lower, upper, conservative, &
       zero_fill) result(status)
    type(psf_operator), intent(in) :: op
    real(c_double), intent(in), contiguous :: val(:, :)
    real(c_double), intent(inout), contiguous :: hval(:, :)
    real(c_double), intent(in), optional :: lam, tol, lower, upper
    integer, intent(in), optional :: max_iter
    logical, intent(in), optional :: per_row, conservative, zero_fill
    integer, intent(out), optional :: iterations
    type(hpsf_fit_options), target :: o
    type(hpsf_fit_info), target :: info
    status = hpsf_fit_options_init(o)
    if (present(lam)) o%lam = lam
    if (present(tol)) o%tol = tol
    if (present(max_iter)) o%max_iter = int(max_iter, c_size_t)
    if (present(per_row)) then
       if (per_row) o%stopping = 1
    end if
    if (present(lower)) then
       o%lower_mode = 1
       o%lower = lower
    end if
    if (present(upper)) then
       o%upper_mode = 1
       o%upper = upper
    end if
    if (present(conservative)) then
       if (conservative) o%conservative = 1
    end if
    if (present(zero_fill)) then
       if (zero_fill) o%missing = 1
    end if
    status = hpsf_fit_info_init(info)
    status = hpsf_fit_f64(op%handle, val, int(size(val), c_size_t), o, c_null_ptr, 0_c_size_t, hval, &
         int(size(hval), c_size_t), c_loc(info))
    if (present(iterations) .and. status == HPSF_OK) iterations = int(info%iterations)
  end function psf_fit

  !> Values at the samples back(N, B) of cell fields hval(K, B).
  integer function psf_resample(op, hval, back) result(status)
    type(psf_operator), intent(in) :: op
    real(c_double), intent(in), contiguous :: hval(:, :)
    real(c_double), intent(inout), contiguous :: back(:, :)
    status = hpsf_resample_f64(op%handle, hval, int(size(hval), c_size_t), back, int(size(back), c_size_t))
  end function psf_resample

  !> keep = .true.: `op` keeps the large working blocks of its fits and resamples for the next call
  !> (a model's time steps then make them once; it holds about one call's working memory between
  !> calls); .false. (the default): gives them back at once. Results are the same bit for bit.
  !> Optional kept_bytes: the bytes held now.
  integer function psf_keep_blocks(op, keep, kept_bytes) result(status)
    type(psf_operator), intent(in) :: op
    logical, intent(in) :: keep
    integer(c_size_t), intent(out), optional, target :: kept_bytes
    integer(c_size_t), target :: held
    status = hpsf_keep_blocks_f64(op%handle, merge(1_c_int32_t, 0_c_int32_t, keep), c_loc(held))
    if (present(kept_bytes) .and. status == HPSF_OK) kept_bytes = held
  end function psf_keep_blocks

  !> The K HEALPix cell ids (ascending).
  integer function psf_cell_ids(op, ids) result(status)
    type(psf_operator), intent(in) :: op
    integer(c_int64_t), intent(out), contiguous :: ids(:)
    status = hpsf_cell_ids_f64(op%handle, ids, int(size(ids), c_size_t))
  end function psf_cell_ids

  !> Saves `op` into the file `path` (the library's versioned binary format, written whole or not at
  !> all), for psf_load in another run or process.
  integer function psf_save(op, path) result(status)
    type(psf_operator), intent(in) :: op
    character(len=*), intent(in) :: path
    status = hpsf_save_f64(op%handle, trim(path)//c_null_char)
  end function psf_save

  !> Loads into `op` a double-precision operator saved by psf_save (frees what `op` held before);
  !> optional device (-1: the CPU) and num_threads (0: all cores). HPSF_BAD_OPERATOR_FILE for a file
  !> of another format version or precision, damaged or truncated; HPSF_IO when it cannot be read.
  integer function psf_load(op, path, device, num_threads) result(status)
    type(psf_operator), intent(inout) :: op
    character(len=*), intent(in) :: path
    integer, intent(in), optional :: device, num_threads
    integer(c_int32_t) :: d
    integer(c_size_t) :: t
    type(c_ptr) :: h
    d = -1
    t = 0
    if (present(device)) d = int(device, c_int32_t)
    if (present(num_threads)) t = int(num_threads, c_size_t)
    h = c_null_ptr
    status = hpsf_load_f64(trim(path)//c_null_char, d, t, h)
    if (status == HPSF_OK) then
       call op%free()
       op%handle = h
    end if
  end function psf_load

  !> Number of samples N (0 for an operator not built).
  integer function op_n_samples(op) result(n)
    class(psf_operator), intent(in) :: op
    integer(c_size_t) :: v
    n = 0
    if (hpsf_n_f64(op%handle, v) == HPSF_OK) n = int(v)
  end function op_n_samples

  !> Number of cells K (0 for an operator not built).
  integer function op_n_cells(op) result(k)
    class(psf_operator), intent(in) :: op
    integer(c_size_t) :: v
    k = 0
    if (hpsf_k_f64(op%handle, v) == HPSF_OK) k = int(v)
  end function op_n_cells

  !> Frees the operator; safe to call twice.
  subroutine op_free(op)
    class(psf_operator), intent(inout) :: op
    call hpsf_free_f64(op%handle)
    op%handle = c_null_ptr
  end subroutine op_free

  subroutine op_final(op)
    type(psf_operator), intent(inout) :: op
    call op%free()
  end subroutine op_final

  !> A C string as a Fortran string.
  function from_c(p) result(s)
    type(c_ptr), intent(in) :: p
    character(len=:), allocatable :: s
    character(kind=c_char), pointer :: chars(:)
    integer :: i, n
    n = 0
    if (c_associated(p)) n = int(c_strlen(p))
    allocate (character(len=n) :: s)
    if (n == 0) return
    call c_f_pointer(p, chars, [n])
    do i = 1, n
       s(i:i) = chars(i)
    end do
  end function from_c

  !> The message of the last failed call on this thread ("" after a success).
  function hpsf_message() result(msg)
    character(len=:), allocatable :: msg
    msg = from_c(hpsf_last_error())
  end function hpsf_message

  !> The library version.
  function psf_version() result(v)
    character(len=:), allocatable :: v
    v = from_c(hpsf_version())
  end function psf_version

end module healpix_psf
