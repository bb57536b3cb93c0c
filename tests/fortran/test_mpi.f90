! The distributed operator from Fortran (mpi_f08) under mpirun: each rank a band of one regional
! sample set; the gathered fit equals the single-process fit of all samples (rank 0) within 1e-10 of
! the field's size with the same CG iterations; bad input on the last rank fails on every rank.
! Prints "rank R: N passed, M failed"; exit status 1 if any rank failed.
program test_mpi
  use, intrinsic :: iso_c_binding
  use mpi_f08
  use healpix_psf
  use healpix_psf_mpi
  implicit none
  integer, parameter :: n_all = 6000
  integer :: rank, nranks, first, n, i, passed, failed, any_failed
  real(c_double), allocatable :: lon(:), lat(:), val(:), hval(:), whole(:), alon(:), alat(:), aval(:), sh(:), again(:)
  integer(c_int64_t), allocatable :: ids(:), sids(:)
  integer(c_size_t) :: k, k_total, ks, its
  type(c_ptr) :: op, single, bad
  type(hpsf_params) :: p
  type(hpsf_fit_options) :: o
  type(hpsf_fit_info), target :: info, si
  integer(c_int) :: s
  real(c_double) :: worst

  passed = 0
  failed = 0
  call MPI_Init()
  call MPI_Comm_rank(MPI_COMM_WORLD, rank)
  call MPI_Comm_size(MPI_COMM_WORLD, nranks)
  first = n_all * rank / nranks
  n = n_all * (rank + 1) / nranks - first
  allocate(lon(n), lat(n), val(n))
  do i = 1, n
     call sample(first + i - 1, lon(i), lat(i))
     val(i) = value(lon(i), lat(i))
  end do
  s = hpsf_params_init(p, 10)
  s = hpsf_fit_options_init(o)
  o%lam = 1d-2
  o%tol = 1d-10
  o%max_iter = 400
  op = c_null_ptr
  ! the mpi_f08 overload
  call check(hpsf_mpi_new_f64(MPI_COMM_WORLD, lon, lat, int(n, c_size_t), p, op) == HPSF_OK, "new")
  s = hpsf_mpi_k_f64(op, k)
  s = hpsf_mpi_k_total_f64(op, k_total)
  allocate(hval(max(k, 1_c_size_t)))
  s = hpsf_fit_info_init(info)
  call check(hpsf_mpi_fit_f64(op, val, int(n, c_size_t), o, c_null_ptr, 0_c_size_t, hval, k, c_loc(info)) &
       == HPSF_OK, "fit")
  ! this rank's blocks kept from fit to fit: the same values, to the bit
  allocate(again(max(k, 1_c_size_t)))
  call check(hpsf_mpi_keep_blocks_f64(op, 1_c_int32_t, c_null_ptr) == HPSF_OK, "keep blocks")
  s = hpsf_mpi_fit_f64(op, val, int(n, c_size_t), o, c_null_ptr, 0_c_size_t, again, k, c_null_ptr)
  ! (NaN, a cell without a valid sample, equals NaN)
  call check(s == HPSF_OK .and. all(again(1:k) == hval(1:k) .or. (again(1:k) /= again(1:k) .and. &
       hval(1:k) /= hval(1:k))), "a fit with blocks kept")
  call check(hpsf_mpi_keep_blocks_f64(op, 0_c_int32_t, c_null_ptr) == HPSF_OK, "blocks given back")
  if (rank == 0) then
     allocate(ids(k_total), whole(k_total))
  else
     allocate(ids(1), whole(1))
  end if
  call check(hpsf_mpi_gather_f64(op, 0_c_int32_t, hval, k, ids, merge(k_total, 0_c_size_t, rank == 0), &
       whole, merge(k_total, 0_c_size_t, rank == 0)) == HPSF_OK, "gather")
  its = 0
  if (rank == 0) then
     allocate(alon(n_all), alat(n_all), aval(n_all))
     do i = 1, n_all
        call sample(i - 1, alon(i), alat(i))
        aval(i) = value(alon(i), alat(i))
     end do
     single = c_null_ptr
     call check(hpsf_new_f64(alon, alat, int(n_all, c_size_t), p, single) == HPSF_OK, "single new")
     s = hpsf_k_f64(single, ks)
     call check(ks == k_total, "the same cell count")
     allocate(sids(ks), sh(ks))
     s = hpsf_cell_ids_f64(single, sids, ks)
     s = hpsf_fit_info_init(si)
     call check(hpsf_fit_f64(single, aval, int(n_all, c_size_t), o, c_null_ptr, 0_c_size_t, sh, ks, c_loc(si)) &
          == HPSF_OK, "single fit")
     call check(all(ids == sids), "the gathered ids")
     worst = maxval(abs(whole - sh))
     call check(worst <= 1d-10 * 12d0, "the gathered field")
     its = si%iterations
     print '(a, i0, a, es8.1, a, i0, a)', "rank 0: ", ks, " cells gathered, within ", worst, &
          " of the single process; ", its, " CG iterations"
     call hpsf_free_f64(single)
  end if
  call MPI_Bcast(its, 1, MPI_INTEGER8, 0, MPI_COMM_WORLD)
  call check(info%iterations == its, "the same CG iterations")
  ! a wrong length on the last rank: every rank fails
  s = hpsf_mpi_fit_f64(op, val, int(n, c_size_t) + merge(1_c_size_t, 0_c_size_t, rank == nranks - 1), o, &
       c_null_ptr, 0_c_size_t, hval, k, c_null_ptr)
  call check(s == merge(HPSF_LENGTH_MISMATCH, HPSF_OTHER_RANK, rank == nranks - 1) .or. &
       (nranks == 1 .and. s == HPSF_LENGTH_MISMATCH), "a wrong length on the last rank")
  ! the integer handle of the mpi module
  bad = c_null_ptr
  call check(hpsf_mpi_new_f64(int(MPI_COMM_WORLD%MPI_VAL, c_int32_t), lon, lat, int(n, c_size_t), p, bad) &
       == HPSF_OK, "new from an integer handle")
  call hpsf_mpi_free_f64(bad)
  call hpsf_mpi_free_f64(op)
  print '(a, i0, a, i0, a, i0, a)', "rank ", rank, ": ", passed, " passed, ", failed, " failed"
  call MPI_Allreduce(failed, any_failed, 1, MPI_INTEGER, MPI_SUM, MPI_COMM_WORLD)
  call MPI_Finalize()
  if (any_failed /= 0) error stop 1

contains

  subroutine check(ok, what)
    logical, intent(in) :: ok
    character(*), intent(in) :: what
    if (ok) then
       passed = passed + 1
    else
       failed = failed + 1
       print '(a, i0, a, a)', "FAIL rank ", rank, ": ", what
    end if
  end subroutine check

  ! sample i of n_all, as tests/c/mpi_test.c
  subroutine sample(i, x, y)
    integer, intent(in) :: i
    real(c_double), intent(out) :: x, y
    x = 7d0 + 2d0 * real(i, c_double) / real(n_all, c_double) + 0.003d0 * sin(37d0 * real(i, c_double))
    y = 44d0 + 2d0 * modulo(0.6180339887d0 * real(i, c_double), 1d0)
  end subroutine sample

  real(c_double) function value(x, y)
    real(c_double), intent(in) :: x, y
    value = 10d0 + sin(3d0 * x) + cos(2d0 * y)
  end function value
end program test_mpi
