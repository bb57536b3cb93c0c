! Test of the Fortran module against a golden case of the reference, and of bad-input statuses.
! Usage: test_healpix_psf CASE_DIR LEVEL NPT LAM CG_ITERS ; last line "N passed, M failed".
program test_healpix_psf
  use, intrinsic :: iso_c_binding
  use healpix_psf
  implicit none
  character(len=4096) :: dir, arg
  integer :: level, npt, cg_iters, n, k, b, iters, npass = 0, nfail = 0, status, unit_no
  real(c_double) :: lam, e, floor_value
  real(c_double), allocatable :: lon(:), lat(:), val(:, :), gold_hval(:, :), gold_inv(:, :), hval(:, :), back(:, :), &
       bounded(:, :), bounded2(:, :), again(:, :)
  integer(c_size_t) :: held
  integer(c_int64_t), allocatable :: gold_ids(:), ids(:)
  logical, allocatable :: keep(:)
  type(psf_operator) :: op, other
  type(hpsf_params) :: p

  call get_command_argument(1, dir)
  call get_command_argument(2, arg); read (arg, *) level
  call get_command_argument(3, arg); read (arg, *) npt
  call get_command_argument(4, arg); read (arg, *) lam
  call get_command_argument(5, arg); read (arg, *) cg_iters

  call read_f64(trim(dir)//"/lon.bin", lon)
  call read_f64(trim(dir)//"/lat.bin", lat)
  n = size(lon)
  call read_2d(trim(dir)//"/val.bin", n, val)
  b = size(val, 2)
  call read_i64(trim(dir)//"/cell_ids.bin", gold_ids)
  k = size(gold_ids)
  call read_2d(trim(dir)//"/hval.bin", k, gold_hval)
  call read_2d(trim(dir)//"/invert.bin", n, gold_inv)
  print '(a, a, a, i0, a, i0, a, i0)', "healpix-psf ", psf_version(), ": N = ", n, ", K = ", k, ", B = ", b

  call check(psf_params_default(p, level) == HPSF_OK, "params default")
  call check(p%npt == 9 .and. p%device == -1, "defaults")
  p%npt = int(npt, c_size_t)
  status = psf_new(op, lon, lat, p)
  call check(status == HPSF_OK, "psf_new: "//hpsf_message())
  call check(op%n_samples() == n .and. op%n_cells() == k, "N and K")
  allocate (ids(k))
  call check(psf_cell_ids(op, ids) == HPSF_OK, "cell ids")
  call check(all(ids == gold_ids), "cell ids equal the reference's")

  allocate (hval(k, b), back(n, b))
  status = psf_fit(op, val, hval, lam=lam, iterations=iters, zero_fill=.true.)
  call check(status == HPSF_OK, "psf_fit: "//hpsf_message())
  e = rel_err(hval, gold_hval)
  call check(e <= 1d-5, "hval error")
  call check(iters == cg_iters, "CG iterations")
  call check(psf_resample(op, hval, back) == HPSF_OK, "psf_resample")
  call check(rel_err(back, gold_inv) <= 1d-5, "invert error")
  print '(a, es9.2, a, i0, a, i0, a)', "fit: hval error ", e, ", ", iters, " iterations (reference ", cg_iters, ")"

  ! blocks kept from fit to fit: the same fit, to the bit
  allocate (again(k, b))
  call check(psf_keep_blocks(op, .true., held) == HPSF_OK, "psf_keep_blocks")
  call check(psf_fit(op, val, again, lam=lam, zero_fill=.true.) == HPSF_OK, "fit with blocks kept")
  call check(psf_fit(op, val, again, lam=lam, zero_fill=.true.) == HPSF_OK, "fit reusing the blocks")
  call check(all(again == hval .or. (again /= again .and. hval /= hval)), "the same fit with blocks kept")
  call check(psf_keep_blocks(op, .false., held) == HPSF_OK .and. held == 0, "blocks given back")

  ! a bounded, conservative fit: no cell below the bound (NaN cells have no valid sample)
  allocate (bounded(k, b))
  floor_value = sum(hval) / size(hval)
  call check(psf_fit(op, val, bounded, lam=lam, lower=floor_value, conservative=.true.) == HPSF_OK, &
       "bounded fit: "//hpsf_message())
  call check(all(bounded >= floor_value .or. bounded /= bounded), "bounded fit stays above its bound")
  call check(any(bounded == floor_value), "some cells are held at the bound")

  ! an operator built from the samples of odd index only: the others come back NaN
  allocate (keep(n))
  keep = mod([(iters, iters = 1, n)], 2) == 1
  call check(psf_new(other, lon, lat, p, mask=keep) == HPSF_OK, "masked psf_new: "//hpsf_message())
  call check(other%n_samples() == n .and. other%n_cells() > 0, "masked N")
  deallocate (hval)
  allocate (hval(other%n_cells(), b))
  call check(psf_fit(other, val, hval, lam=lam) == HPSF_OK, "masked fit")
  call check(psf_resample(other, hval, back) == HPSF_OK, "masked resample")
  call check(all((back /= back) .or. spread(keep, 2, b)), "samples left out come back NaN")
  call check(count(back == back) > n / 4, "samples used come back as numbers")
  call check(psf_new(other, lon, lat, p, mask=keep(1:n - 1)) == HPSF_LENGTH_MISMATCH, "mask length")
  call other%free()
  deallocate (hval)
  allocate (hval(k, b))

  ! saved and loaded: the same cells and the same fit, to the bit
  call check(psf_save(op, "hpsf-fortran-test.op") == HPSF_OK, "psf_save: "//hpsf_message())
  call check(psf_load(other, "hpsf-fortran-test.op", num_threads=1) == HPSF_OK, "psf_load: "//hpsf_message())
  call check(other%n_cells() == k, "loaded K")
  allocate (bounded2(k, b))
  call check(psf_fit(op, val, hval, lam=lam) == HPSF_OK .and. psf_fit(other, val, bounded2, lam=lam) == HPSF_OK, &
       "fits of the saved and the loaded operator")
  call check(all(hval == bounded2 .or. (hval /= hval .and. bounded2 /= bounded2)), "the loaded operator fits the same")
  open (newunit=unit_no, file="hpsf-fortran-test.op", status="replace", access="stream")
  write (unit_no) "HPSF-OP", achar(10), "damaged"
  close (unit_no, status="keep")
  call check(psf_load(other, "hpsf-fortran-test.op") == HPSF_BAD_OPERATOR_FILE, "a damaged file")
  call check(other%n_cells() == k, "a failed load leaves the operator as it was")
  open (newunit=unit_no, file="hpsf-fortran-test.op", status="old")
  close (unit_no, status="delete")
  call check(psf_load(other, "hpsf-fortran-test.op") == HPSF_IO, "a missing file")
  call check(index(hpsf_message(), "hpsf-fortran-test.op") > 0, "the message names the file")
  call other%free()

  ! bad input: statuses and messages, no crash
  call check(psf_fit(op, val(1:n - 1, :), hval, lam=lam) == HPSF_LENGTH_MISMATCH, "wrong val size")
  call check(index(hpsf_message(), "val") > 0, "message names val")
  call check(psf_fit(op, val, hval, lam=-1d0) == HPSF_INVALID_PARAMETER, "negative lam")
  call check(psf_fit(op, val, hval(1:k - 1, :)) == HPSF_LENGTH_MISMATCH, "wrong hval size")
  call check(psf_new(other, lon, lat(1:n - 1), p) == HPSF_LENGTH_MISMATCH, "lon/lat sizes")
  p%level = 40
  call check(psf_new(other, lon, lat, p) == HPSF_INVALID_PARAMETER, "level 40")
  call check(len(hpsf_message()) > 0, "message for level 40")
  p%level = level
  lat(1) = 95d0
  call check(psf_new(other, lon, lat, p) == HPSF_INVALID_COORDINATE, "latitude 95")
  call check(other%n_cells() == 0, "failed build leaves the operator empty")
  call check(psf_fit(other, val, hval) == HPSF_NULL_POINTER, "fit with an empty operator")

  call op%free()
  call op%free() ! safe twice
  print '(i0, a, i0, a)', npass, " passed, ", nfail, " failed"
  if (nfail > 0) error stop 1

contains

  subroutine check(ok, what)
    logical, intent(in) :: ok
    character(len=*), intent(in) :: what
    if (ok) then
       npass = npass + 1
    else
       nfail = nfail + 1
       print '(a, a)', "FAIL: ", what
    end if
  end subroutine check

  real(c_double) function rel_err(a, g)
    real(c_double), intent(in) :: a(:, :), g(:, :)
    rel_err = maxval(abs(a - g)) / maxval(abs(g))
  end function rel_err

  subroutine read_f64(path, x)
    character(len=*), intent(in) :: path
    real(c_double), allocatable, intent(out) :: x(:)
    integer :: u, bytes
    inquire (file=path, size=bytes)
    allocate (x(bytes / 8))
    open (newunit=u, file=path, access="stream", form="unformatted", status="old")
    read (u) x
    close (u)
  end subroutine read_f64

  subroutine read_2d(path, rows, x)
    character(len=*), intent(in) :: path
    integer, intent(in) :: rows
    real(c_double), allocatable, intent(out) :: x(:, :)
    real(c_double), allocatable :: flat(:)
    call read_f64(path, flat)
    x = reshape(flat, [rows, size(flat) / rows])
  end subroutine read_2d

  subroutine read_i64(path, x)
    character(len=*), intent(in) :: path
    integer(c_int64_t), allocatable, intent(out) :: x(:)
    integer :: u, bytes
    inquire (file=path, size=bytes)
    allocate (x(bytes / 8))
    open (newunit=u, file=path, access="stream", form="unformatted", status="old")
    read (u) x
    close (u)
  end subroutine read_i64
end program test_healpix_psf
