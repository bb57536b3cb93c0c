/* The distributed C ABI (HPSF_MPI) under mpirun: every rank holds a band of longitudes of one
 * regional sample set and builds its part of the operator; the gathered fit must equal, within
 * 1e-10 of the field's size, the single-process fit of all samples (built on rank 0), with the same
 * CG iterations; resample at each rank's samples equals the single-process resample there; bad
 * input on the last rank fails on every rank (its own status there, HPSF_STATUS_OTHER_RANK on the
 * others). Usage: mpirun -np P mpi_test. Each rank prints "rank R: N passed, M failed"; the exit
 * status is 0 only if M == 0 on every rank. */
#define HPSF_MPI
#include "healpix_psf.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed = 0, failed = 0, rank = 0, size = 1;

#define CHECK(cond, ...)                                          \
    do {                                                          \
        if (cond) {                                               \
            passed++;                                             \
        } else {                                                  \
            failed++;                                             \
            printf("FAIL rank %d %s:%d: ", rank, __FILE__, __LINE__); \
            printf(__VA_ARGS__);                                  \
            printf("\n");                                         \
        }                                                         \
    } while (0)

/* sample i of N: a regional set near (8E, 45N), longitudes increasing with i (bands = ranges) */
static void sample(size_t i, size_t n, double *lon, double *lat) {
    double t = (double)i / (double)n;
    *lon = 7.0 + 2.0 * t + 0.003 * sin(37.0 * (double)i);
    *lat = 44.0 + 2.0 * fmod(0.6180339887 * (double)i, 1.0);
}

static double value(double lon, double lat) { return 10.0 + sin(3.0 * lon) + cos(2.0 * lat); }

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Fint comm = MPI_Comm_c2f(MPI_COMM_WORLD);
    const size_t n_all = 6000, first = n_all * (size_t)rank / (size_t)size,
                 n = n_all * (size_t)(rank + 1) / (size_t)size - first;
    double *lon = malloc(n * sizeof(double)), *lat = malloc(n * sizeof(double)), *val = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        sample(first + i, n_all, &lon[i], &lat[i]);
        val[i] = value(lon[i], lat[i]);
    }
    hpsf_params p;
    hpsf_params_init(&p, 10);
    hpsf_fit_options o;
    hpsf_fit_options_init(&o);
    o.lam = 1e-2;
    o.tol = 1e-10;
    o.max_iter = 400;

    hpsf_mpi_op_f64 *op = NULL;
    hpsf_status s = hpsf_mpi_new_f64(comm, lon, lat, n, &p, &op);
    CHECK(s == HPSF_STATUS_OK, "hpsf_mpi_new_f64: %d %s", (int)s, hpsf_last_error());
    size_t k = 0, k_total = 0, n_op = 0;
    hpsf_mpi_k_f64(op, &k);
    hpsf_mpi_k_total_f64(op, &k_total);
    hpsf_mpi_n_f64(op, &n_op);
    CHECK(n_op == n, "n = %zu, expected %zu", n_op, n);
    double *hval = malloc((k + 1) * sizeof(double)), *back = malloc(n * sizeof(double));
    hpsf_fit_info info;
    hpsf_fit_info_init(&info);
    s = hpsf_mpi_fit_resample_f64(op, val, n, &o, NULL, 0, hval, k, back, n, &info);
    CHECK(s == HPSF_STATUS_OK, "hpsf_mpi_fit_resample_f64: %d %s", (int)s, hpsf_last_error());
    /* this rank's blocks kept from call to call: the same fit, to the bit */
    double *kept = malloc((k + 1) * sizeof(double)), *kept_back = malloc(n * sizeof(double));
    size_t held = 1;
    CHECK(hpsf_mpi_keep_blocks_f64(op, 1, &held) == HPSF_STATUS_OK, "keep_blocks: %s", hpsf_last_error());
    for (int round = 0; round < 2; round++) {
        s = hpsf_mpi_fit_resample_f64(op, val, n, &o, NULL, 0, kept, k, kept_back, n, NULL);
        CHECK(s == HPSF_STATUS_OK && memcmp(kept, hval, k * sizeof(double)) == 0 &&
                  memcmp(kept_back, back, n * sizeof(double)) == 0,
              "fit %d with blocks kept equals the fit without", round);
    }
    CHECK(hpsf_mpi_keep_blocks_f64(op, 0, &held) == HPSF_STATUS_OK && held == 0, "blocks given back: %zu", held);
    CHECK(hpsf_mpi_keep_blocks_f64(op, -1, NULL) == HPSF_STATUS_INVALID_PARAMETER, "keep -1");
    free(kept), free(kept_back);
    uint64_t *ids = rank == 0 ? malloc(k_total * sizeof(uint64_t)) : NULL;
    double *all = rank == 0 ? malloc(k_total * sizeof(double)) : NULL;
    s = hpsf_mpi_gather_f64(op, 0, hval, k, ids, rank == 0 ? k_total : 0, all, rank == 0 ? k_total : 0);
    CHECK(s == HPSF_STATUS_OK, "hpsf_mpi_gather_f64: %d %s", (int)s, hpsf_last_error());

    /* the single-process operator of all samples on rank 0, its resample sent to every rank */
    double *single_back = malloc(n_all * sizeof(double));
    size_t iterations = 0;
    if (rank == 0) {
        double *alon = malloc(n_all * sizeof(double)), *alat = malloc(n_all * sizeof(double)),
               *aval = malloc(n_all * sizeof(double));
        for (size_t i = 0; i < n_all; i++) {
            sample(i, n_all, &alon[i], &alat[i]);
            aval[i] = value(alon[i], alat[i]);
        }
        hpsf_op_f64 *single = NULL;
        s = hpsf_new_f64(alon, alat, n_all, &p, &single);
        CHECK(s == HPSF_STATUS_OK, "hpsf_new_f64: %d %s", (int)s, hpsf_last_error());
        size_t ks = 0;
        hpsf_k_f64(single, &ks);
        CHECK(ks == k_total, "single-process K %zu, distributed %zu", ks, k_total);
        uint64_t *sids = malloc(ks * sizeof(uint64_t));
        double *sh = malloc(ks * sizeof(double));
        hpsf_cell_ids_f64(single, sids, ks);
        hpsf_fit_info si;
        hpsf_fit_info_init(&si);
        s = hpsf_fit_resample_f64(single, aval, n_all, &o, NULL, 0, sh, ks, single_back, n_all, &si);
        CHECK(s == HPSF_STATUS_OK, "hpsf_fit_resample_f64: %d %s", (int)s, hpsf_last_error());
        double worst = 0.0;
        size_t same_ids = 0;
        for (size_t c = 0; c < ks && c < k_total; c++) {
            same_ids += ids[c] == sids[c];
            worst = fmax(worst, fabs(all[c] - sh[c]));
        }
        CHECK(same_ids == ks, "%zu of %zu gathered ids equal the single process's", same_ids, ks);
        CHECK(worst <= 1e-10 * 12.0, "the gathered fit differs by %g", worst);
        iterations = si.iterations;
        printf("rank 0: %zu cells gathered, within %.1e of the single process; %zu CG iterations\n", ks, worst,
               si.iterations);
        hpsf_free_f64(single);
        free(alon), free(alat), free(aval), free(sids), free(sh);
    }
    MPI_Bcast(single_back, (int)n_all, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    MPI_Bcast(&iterations, sizeof iterations, MPI_BYTE, 0, MPI_COMM_WORLD);
    CHECK(info.iterations == iterations, "%zu iterations, the single process %zu", info.iterations, iterations);
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(back[i] - single_back[first + i]));
    CHECK(worst <= 1e-10 * 12.0, "the resampled fit differs by %g", worst);

    /* bad input on the last rank only: every rank fails, none hangs */
    int last = rank == size - 1;
    s = hpsf_mpi_fit_f64(op, last ? NULL : val, n, &o, NULL, 0, hval, k, NULL);
    CHECK(s == (last ? HPSF_STATUS_NULL_POINTER : HPSF_STATUS_OTHER_RANK), "NULL values on the last rank: %d", (int)s);
    s = hpsf_mpi_resample_f64(op, hval, last ? k + 1 : k, back, n);
    CHECK(s == (last ? HPSF_STATUS_LENGTH_MISMATCH : HPSF_STATUS_OTHER_RANK), "a wrong length on the last rank: %d",
          (int)s);
    hpsf_mpi_op_f64 *bad = NULL;
    double nan_lat = lat[0];
    if (last) lat[0] = NAN;
    s = hpsf_mpi_new_f64(comm, lon, lat, n, &p, &bad);
    lat[0] = nan_lat;
    CHECK(s == (last ? HPSF_STATUS_INVALID_COORDINATE : HPSF_STATUS_OTHER_RANK) && bad == NULL,
          "a NaN latitude on the last rank: %d", (int)s);
    if (size > 1) {
        p.level = last ? 11 : 10;
        s = hpsf_mpi_new_f64(comm, lon, lat, n, &p, &bad);
        CHECK(s == (last ? HPSF_STATUS_INVALID_PARAMETER : HPSF_STATUS_OTHER_RANK) && bad == NULL,
              "another level on the last rank: %d", (int)s);
    }
    hpsf_mpi_free_f64(op);
    free(lon), free(lat), free(val), free(hval), free(back), free(ids), free(all), free(single_back);
    printf("rank %d: %d passed, %d failed\n", rank, passed, failed);
    int any = failed;
    MPI_Allreduce(MPI_IN_PLACE, &any, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Finalize();
    return any == 0 ? 0 : 1;
}
