# The Julia binding run for real (Julia ≥ 1.5): golden cases of the reference built, fitted and
# resampled through `HealpixPsf`, bad input, and the finalizer. Run by tests/suite/julia_bindings.rs:
#
#   HEALPIX_PSF_LIB=target/release/libhealpix_psf.so julia bindings/julia/test/runtests.jl \
#       CASE_DIR LEVEL NPT LAM [CASE_DIR LEVEL NPT LAM ...]
#
# A case directory holds the reference's little-endian C-order arrays (tests/fixtures/README.md):
# lon, lat (N), val (B×N: an N×B matrix here), cell_ids (K, int64), hval (B×K), invert (B×N).

include(joinpath(@__DIR__, "..", "HealpixPsf.jl"))
using .HealpixPsf
using Test

readbin(dir, name, T) = (path = joinpath(dir, name); v = Vector{T}(undef, filesize(path) ÷ sizeof(T)); read!(path, v); v)
relerr(a, b) = (m = .!isnan.(b); maximum(abs.(a[m] .- b[m])) / maximum(abs.(b[m])))

function golden(dir::String, level::Int, npt::Int, lam::Float64)
    lon, lat = readbin(dir, "lon.bin", Float64), readbin(dir, "lat.bin", Float64)
    n = length(lon)
    val = reshape(readbin(dir, "val.bin", Float64), n, :)
    b = size(val, 2)
    ids = readbin(dir, "cell_ids.bin", Int64)
    k = length(ids)
    gold_hval = reshape(readbin(dir, "hval.bin", Float64), k, b)
    gold_invert = reshape(readbin(dir, "invert.bin", Float64), n, b)
    @testset "$(basename(dir)): N = $n, K = $k, B = $b" begin
        op = Operator(lon, lat; level = level, npt = npt)
        @test HealpixPsf.nsamples(op) == n
        @test HealpixPsf.ncells(op) == k
        @test cell_ids(op) == UInt64.(ids)
        # the reference counts a missing sample as 0 (zero_fill) and stops at its tolerance
        hval = fit(op, val; lam = lam, zero_fill = true)
        @test size(hval) == (k, b)
        @test relerr(hval, gold_hval) <= 1e-5
        back = resample(op, hval)
        @test size(back) == (n, b)
        @test relerr(back, gold_invert) <= 1e-5
        # one row as a vector gives a vector
        @test fit(op, val[:, 1]; lam = lam, zero_fill = true) ≈ hval[:, 1]
        keep_blocks!(op, true)
        @test isequal(fit(op, val; lam = lam, zero_fill = true), hval)   # blocks kept: the same bits
        @test isequal(fit(op, val; lam = lam, zero_fill = true), hval)
        @test keep_blocks!(op, false) == 0
        # single precision
        op32 = Operator{Float32}(lon, lat; level = level, npt = npt)
        h32 = fit(op32, Float32.(val); lam = lam, zero_fill = true)
        @test eltype(h32) == Float32 && relerr(Float64.(h32), gold_hval) <= 1e-2
        println("$(basename(dir)): hval within $(relerr(hval, gold_hval)), resampled within $(relerr(back, gold_invert)) of the reference")
    end
end

function bad_input(dir::String, level::Int)
    lon, lat = readbin(dir, "lon.bin", Float64), readbin(dir, "lat.bin", Float64)
    @testset "bad input" begin
        @test_throws DimensionMismatch Operator(lon, lat[1:end-1]; level = level)
        bad = copy(lat); bad[1] = 95.0
        e = try Operator(lon, bad; level = level); nothing catch err; err end
        @test e isa HpsfError && occursin("latitude", e.message) && HealpixPsf.STATUS_NAMES[e.status] == "INVALID_COORDINATE"
        @test_throws HpsfError Operator(lon, lat; level = 40)
        @test_throws HpsfError Operator(Float64[], Float64[]; level = level)
        op = Operator(lon, lat; level = level)
        @test_throws HpsfError fit(op, zeros(length(lon) - 1))        # not a multiple of N
        @test_throws HpsfError fit(op, zeros(length(lon)); lam = -1)  # an impossible damping
        @test_throws HpsfError resample(op, zeros(HealpixPsf.ncells(op) + 1))
        # the message is the library's
        e = try fit(op, zeros(length(lon)); lam = -1); nothing catch err; err end
        @test occursin("lam", sprint(showerror, e))
    end
end

function saved(dir::String, level::Int)
    lon, lat = readbin(dir, "lon.bin", Float64), readbin(dir, "lat.bin", Float64)
    val = readbin(dir, "val.bin", Float64)
    @testset "save and load" begin
        path = tempname()
        for T in (Float64, Float32)
            op = Operator{T}(lon, lat; level = level)
            @test save(op, path) == path
            back = Operator(path)
            @test back isa Operator{T}
            @test cell_ids(back) == cell_ids(op)
            v = T.(reshape(val, length(lon), :))
            @test isequal(fit(back, v; lam = 1e-3), fit(op, v; lam = 1e-3))   # the same bits (NaN too)
            close(back)
        end
        write(path, "HPSF-OP\n and then nothing")
        e = try Operator(path); nothing catch err; err end
        @test e isa HpsfError && HealpixPsf.STATUS_NAMES[e.status] == "BAD_OPERATOR_FILE"
        rm(path)
        e = try Operator(path); nothing catch err; err end
        @test e isa HpsfError && HealpixPsf.STATUS_NAMES[e.status] == "IO"
    end
end

function finalizers(dir::String, level::Int)
    lon, lat = readbin(dir, "lon.bin", Float64), readbin(dir, "lat.bin", Float64)
    @testset "the handle is freed" begin
        op = Operator(lon, lat; level = level)
        @test op.handle != C_NULL
        finalize(op)                        # what the garbage collector runs
        @test op.handle == C_NULL
        close(op)                           # a second free is harmless
        @test_throws HpsfError fit(op, zeros(length(lon)))   # a freed operator: an error, not a crash
        # many operators left to the collector
        for _ in 1:20
            Operator(lon, lat; level = level)
        end
        GC.gc(); GC.gc()
        @test true
    end
end

args = ARGS
length(args) >= 4 && length(args) % 4 == 0 || error("usage: runtests.jl CASE_DIR LEVEL NPT LAM [...]")
@testset "HealpixPsf.jl (Julia $(VERSION))" begin
    for i in 1:4:length(args)
        golden(args[i], parse(Int, args[i+1]), parse(Int, args[i+2]), parse(Float64, args[i+3]))
    end
    bad_input(args[1], parse(Int, args[2]))
    finalizers(args[1], parse(Int, args[2]))
    saved(args[1], parse(Int, args[2]))
end
