! Fortran interface to the distributed operator of healpix-psf (the HPSF_MPI part of
! include/healpix_psf.h; the library built with the cargo feature `mpi`). Compile after
! healpix_psf.f90, with the MPI compiler wrapper (mpif90): it uses mpi_f08.
!
! hpsf_mpi_new_f64 takes the communicator either as an mpi_f08 type(MPI_Comm) or as the integer
! handle of the `mpi` module; every call is collective over that communicator and succeeds or fails
! on every rank (HPSF_OTHER_RANK on the ranks whose own arguments were fine). Each rank passes its
! own samples, gets its own cells' fitted values (hval(k, B), k = hpsf_mpi_k_f64) and, with
! hpsf_mpi_gather_f64, the whole field on one rank.
!
!   use healpix_psf
!   use healpix_psf_mpi
!   type(c_ptr) :: op
!   call check(hpsf_params_init(p, 10))
!   call check(hpsf_mpi_new_f64(MPI_COMM_WORLD, lon, lat, size(lon, kind=c_size_t), p, op))
!   call check(hpsf_mpi_k_f64(op, k))
!   allocate(hval(k, nrows))
!   call check(hpsf_mpi_fit_f64(op, val, size(val, kind=c_size_t), options, c_null_ptr, 0_c_size_t, &
!                               hval, size(hval, kind=c_size_t), c_null_ptr))
!   call hpsf_mpi_free_f64(op)
module healpix_psf_mpi
  use, intrinsic :: iso_c_binding
  use healpix_psf, only: hpsf_params, hpsf_fit_options
  use mpi_f08, only: MPI_Comm
  implicit none
  private
  public :: hpsf_mpi_new_f64, hpsf_mpi_free_f64, hpsf_mpi_n_f64, hpsf_mpi_k_f64, hpsf_mpi_k_total_f64, &
       hpsf_mpi_cell_ids_f64, hpsf_mpi_fit_f64, hpsf_mpi_resample_f64, hpsf_mpi_fit_resample_f64, &
       hpsf_mpi_gather_f64, hpsf_mpi_keep_blocks_f64

  ! the C function (the communicator as an integer handle, MPI_Fint) and its mpi_f08 overload
  interface hpsf_mpi_new_f64
     integer(c_int) function hpsf_mpi_new_f64(comm, lon, lat, n, params, out) bind(c, name="hpsf_mpi_new_f64")
       import :: c_int, c_int32_t, c_double, c_size_t, c_ptr, hpsf_params
       integer(c_int32_t), value :: comm
       real(c_double), intent(in) :: lon(*), lat(*)
       integer(c_size_t), value :: n
       type(hpsf_params), intent(in) :: params
       type(c_ptr), intent(inout) :: out
     end function hpsf_mpi_new_f64
     module procedure new_f64_comm
  end interface hpsf_mpi_new_f64

  interface
     subroutine hpsf_mpi_free_f64(op) bind(c, name="hpsf_mpi_free_f64")
       import :: c_ptr
       type(c_ptr), value :: op
     end subroutine hpsf_mpi_free_f64
     integer(c_int) function hpsf_mpi_n_f64(op, out) bind(c, name="hpsf_mpi_n_f64")
       import :: c_int, c_ptr, c_size_t
       type(c_ptr), value :: op
       integer(c_size_t), intent(out) :: out
     end function hpsf_mpi_n_f64
     integer(c_int) function hpsf_mpi_k_f64(op, out) bind(c, name="hpsf_mpi_k_f64")
       import :: c_int, c_ptr, c_size_t
       type(c_ptr), value :: op
       integer(c_size_t), intent(out) :: out
     end function hpsf_mpi_k_f64
     integer(c_int) function hpsf_mpi_k_total_f64(op, out) bind(c, name="hpsf_mpi_k_total_f64")
       import :: c_int, c_ptr, c_size_t
       type(c_ptr), value :: op
       integer(c_size_t), intent(out) :: out
     end function hpsf_mpi_k_total_f64
     integer(c_int) function hpsf_mpi_keep_blocks_f64(op, keep, kept_bytes) bind(c, name="hpsf_mpi_keep_blocks_f64")
       import :: c_int, c_int32_t, c_ptr
       type(c_ptr), value :: op
       integer(c_int32_t), value :: keep
       type(c_ptr), value :: kept_bytes
     end function hpsf_mpi_keep_blocks_f64
     integer(c_int) function hpsf_mpi_cell_ids_f64(op, out, len) bind(c, name="hpsf_mpi_cell_ids_f64")
       import :: c_int, c_ptr, c_size_t, c_int64_t
       type(c_ptr), value :: op
       integer(c_int64_t), intent(inout) :: out(*)
       integer(c_size_t), value :: len
     end function hpsf_mpi_cell_ids_f64
     integer(c_int) function hpsf_mpi_fit_f64(op, val, val_len, options, x0, x0_len, hval, hval_len, info) &
          bind(c, name="hpsf_mpi_fit_f64")
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
     end function hpsf_mpi_fit_f64
     integer(c_int) function hpsf_mpi_resample_f64(op, hval, hval_len, out, out_len) &
          bind(c, name="hpsf_mpi_resample_f64")
       import :: c_int, c_ptr, c_double, c_size_t
       type(c_ptr), value :: op
       real(c_double), intent(in) :: hval(*)
       integer(c_size_t), value :: hval_len
       real(c_double), intent(inout) :: out(*)
       integer(c_size_t), value :: out_len
     end function hpsf_mpi_resample_f64
     integer(c_int) function hpsf_mpi_fit_resample_f64(op, val, val_len, options, x0, x0_len, hval, hval_len, &
          resampled, resampled_len, info) bind(c, name="hpsf_mpi_fit_resample_f64")
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
     end function hpsf_mpi_fit_resample_f64
     ! on the other ranks than root, ids and out may be empty arrays (lengths 0)
     integer(c_int) function hpsf_mpi_gather_f64(op, root, hval, hval_len, ids, ids_len, out, out_len) &
          bind(c, name="hpsf_mpi_gather_f64")
       import :: c_int, c_int32_t, c_ptr, c_double, c_size_t, c_int64_t
       type(c_ptr), value :: op
       integer(c_int32_t), value :: root
       real(c_double), intent(in) :: hval(*)
       integer(c_size_t), value :: hval_len
       integer(c_int64_t), intent(inout) :: ids(*)
       integer(c_size_t), value :: ids_len
       real(c_double), intent(inout) :: out(*)
       integer(c_size_t), value :: out_len
     end function hpsf_mpi_gather_f64
  end interface

contains

  !> hpsf_mpi_new_f64 with an mpi_f08 communicator.
  integer(c_int) function new_f64_comm(comm, lon, lat, n, params, out) result(status)
    type(MPI_Comm), intent(in) :: comm
    real(c_double), intent(in) :: lon(*), lat(*)
    integer(c_size_t), value :: n
    type(hpsf_params), intent(in) :: params
    type(c_ptr), intent(inout) :: out
    status = hpsf_mpi_new_f64(int(comm%MPI_VAL, c_int32_t), lon, lat, n, params, out)
  end function new_f64_comm
end module healpix_psf_mpi
