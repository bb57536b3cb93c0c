/* Test of the healpix-psf C ABI against a golden case of the reference, and of its bad-input
 * statuses. Usage: capi_test CASE_DIR LEVEL NPT LAM CG_ITERS
 * (CASE_DIR holds lon.bin, lat.bin, val.bin, cell_ids.bin, hval.bin, invert.bin as written by
 * ref_case.py; the last line printed is "N passed, M failed"; exit status 0 only if M == 0). */
#include "healpix_psf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int passed = 0, failed = 0;

#define CHECK(cond, ...)                                   \
    do {                                                   \
        if (cond) {                                        \
            passed++;                                      \
        } else {                                           \
            failed++;                                      \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);    \
            printf(__VA_ARGS__);                           \
            printf("\n");                                  \
        }                                                  \
    } while (0)

static void *read_file(const char *dir, const char *name, size_t *bytes) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("cannot open %s\n", path);
        exit(2);
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc((size_t)size);
    if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size) {
        printf("cannot read %s\n", path);
        exit(2);
    }
    fclose(f);
    *bytes = (size_t)size;
    return buf;
}

/* max|a-b| / max|b| */
static double rel_err_d(const double *a, const double *b, size_t n) {
    double diff = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (d > diff || isnan(d)) diff = isnan(d) ? INFINITY : d;
        if (fabs(b[i]) > scale) scale = fabs(b[i]);
    }
    return scale > 0 ? diff / scale : diff;
}

static double rel_err_f(const float *a, const double *b, size_t n) {
    double diff = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > diff || isnan(d)) diff = isnan(d) ? INFINITY : d;
        if (fabs(b[i]) > scale) scale = fabs(b[i]);
    }
    return scale > 0 ? diff / scale : diff;
}

/* The samples of a case: lon, lat (N) and val (B×N). */
typedef struct {
    double *lon, *lat, *val;
    size_t n, b;
} samples;

static samples read_samples(const char *dir) {
    samples s;
    size_t bytes;
    s.lon = read_file(dir, "lon.bin", &bytes);
    s.n = bytes / sizeof(double);
    s.lat = read_file(dir, "lat.bin", &bytes);
    s.val = read_file(dir, "val.bin", &bytes);
    s.b = bytes / sizeof(double) / s.n;
    return s;
}

/* A bounded fit (bounds = each row's valid range) against a golden --clip input input case: hval,
 * the cells held at each bound, the per-row diagnostics and the per-cell sample counts. */
static void check_bounded(const char *dir, int level, double lam) {
    samples sm = read_samples(dir);
    double *lon = sm.lon, *lat = sm.lat, *val = sm.val;
    size_t n = sm.n, b = sm.b, bytes;
    double *gold_hval = read_file(dir, "hval.bin", &bytes);
    size_t k = bytes / sizeof(double) / b;
    int64_t *gold_low = read_file(dir, "n_clipped_low.bin", &bytes);
    int64_t *gold_high = read_file(dir, "n_clipped_high.bin", &bytes);

    hpsf_params p;
    hpsf_params_init(&p, level);
    p.area_mode = 3; /* the reference's estimate, for parity */
    hpsf_op_f64 *op = NULL;
    CHECK(hpsf_new_f64(lon, lat, n, &p, &op) == HPSF_STATUS_OK, "bounded case: new (%s)", hpsf_last_error());
    if (!op) return;
    hpsf_fit_options o;
    hpsf_fit_options_init(&o);
    CHECK(o.lower_mode == 0 && o.upper_mode == 0 && o.max_outer == 10 && o.conservative == 0 && o.empty_cells == 0,
          "bounded options defaults");
    o.lam = lam;
    o.lower_mode = 2;
    o.upper_mode = 2;
    o.empty_cells = 1;
    o.missing = 1; /* the reference's zero-filling, for parity */
    hpsf_fit_info info;
    hpsf_fit_info_init(&info);
    size_t *low = calloc(b, sizeof(size_t)), *high = calloc(b, sizeof(size_t)), *empty = calloc(b, sizeof(size_t));
    double *rms = calloc(b, sizeof(double)), *rmax = calloc(b, sizeof(double));
    info.capacity = b;
    info.n_clipped_low = low;
    info.n_clipped_high = high;
    info.empty_cells = empty;
    info.residual_rms = rms;
    info.residual_max = rmax;
    double *hval = malloc(b * k * sizeof(double));
    hpsf_status st = hpsf_fit_f64(op, val, b * n, &o, NULL, 0, hval, b * k, &info);
    CHECK(st == HPSF_STATUS_OK, "bounded fit: %d (%s)", (int)st, hpsf_last_error());
    double e = rel_err_d(hval, gold_hval, b * k);
    CHECK(e <= 1e-5, "bounded hval error %.3g", e);
    int same = 1, sane = 1;
    for (size_t j = 0; j < b; j++) {
        same &= low[j] == (size_t)gold_low[j] && high[j] == (size_t)gold_high[j];
        sane &= empty[j] < k && rms[j] > 0 && rmax[j] >= rms[j];
    }
    CHECK(same, "held cells equal the reference's (row 0: %zu/%zu, reference %lld/%lld)", low[0], high[0],
          (long long)gold_low[0], (long long)gold_high[0]);
    CHECK(sane && info.outer_passes >= 1, "per-row diagnostics");
    printf("bounded fit: hval error %.2e, held %zu low / %zu high in row 0, %zu passes, residual RMS %.3g\n", e,
           low[0], high[0], info.outer_passes, rms[0]);
    uint32_t *counts = malloc(k * sizeof(uint32_t));
    size_t nnz = 0, total = 0;
    CHECK(hpsf_cell_sample_counts_f64(op, counts, k) == HPSF_STATUS_OK && hpsf_nnz_f64(op, &nnz) == HPSF_STATUS_OK,
          "cell_sample_counts");
    for (size_t c = 0; c < k; c++) total += counts[c];
    CHECK(total == nnz, "sample counts add up to the links: %zu vs %zu", total, nnz);
    o.lower_mode = 7;
    CHECK(hpsf_fit_f64(op, val, b * n, &o, NULL, 0, hval, b * k, NULL) == HPSF_STATUS_INVALID_PARAMETER,
          "lower_mode 7 rejected");
    hpsf_free_f64(op);
    free(lon), free(lat), free(val), free(gold_hval), free(gold_low), free(gold_high), free(low), free(high);
    free(empty), free(rms), free(rmax), free(hval), free(counts);
}

/* An operator built from some samples (sample_mask) against one built from their coordinates alone:
 * the same cells and fit; the samples left out come back NaN. */
static void check_masked(const double *lon, const double *lat, const double *val, size_t n, size_t b,
                         const hpsf_params *base, double lam) {
    uint8_t *mask = malloc(n);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) m += (mask[i] = (uint8_t)(i % 4 != 0));
    double *sl = malloc(m * sizeof(double)), *sa = malloc(m * sizeof(double)), *sv = malloc(b * m * sizeof(double));
    for (size_t i = 0, j = 0; i < n; i++) {
        if (!mask[i]) continue;
        sl[j] = lon[i], sa[j] = lat[i];
        for (size_t r = 0; r < b; r++) sv[r * m + j] = val[r * n + i];
        j++;
    }
    hpsf_params p = *base;
    hpsf_op_f64 *sub = NULL, *op = NULL, *none = NULL;
    CHECK(hpsf_new_f64(sl, sa, m, &p, &sub) == HPSF_STATUS_OK, "subset operator (%s)", hpsf_last_error());
    p.sample_mask = mask;
    p.sample_mask_len = n;
    CHECK(hpsf_new_f64(lon, lat, n, &p, &op) == HPSF_STATUS_OK, "masked operator (%s)", hpsf_last_error());
    if (!op || !sub) return;
    size_t k = 0, ks = 0, got_n = 0;
    hpsf_k_f64(op, &k), hpsf_k_f64(sub, &ks), hpsf_n_f64(op, &got_n);
    CHECK(k == ks && got_n == n, "masked: K %zu vs %zu, N %zu", k, ks, got_n);
    hpsf_fit_options o;
    hpsf_fit_options_init(&o);
    o.lam = lam;
    double *h = malloc(b * k * sizeof(double)), *hs = malloc(b * k * sizeof(double));
    double *back = malloc(b * n * sizeof(double)), *back_s = malloc(b * m * sizeof(double));
    CHECK(hpsf_fit_resample_f64(op, val, b * n, &o, NULL, 0, h, b * k, back, b * n, NULL) == HPSF_STATUS_OK &&
              hpsf_fit_resample_f64(sub, sv, b * m, &o, NULL, 0, hs, b * k, back_s, b * m, NULL) == HPSF_STATUS_OK,
          "masked fits (%s)", hpsf_last_error());
    int same = 1;
    for (size_t i = 0; i < b * k; i++) same &= h[i] == hs[i];
    for (size_t r = 0; r < b; r++)
        for (size_t i = 0, j = 0; i < n; i++) same &= mask[i] ? back[r * n + i] == back_s[r * m + j++] : isnan(back[r * n + i]);
    CHECK(same, "masked fit and resample equal the subset's");
    p.sample_mask_len = n - 1;
    CHECK(hpsf_new_f64(lon, lat, n, &p, &none) == HPSF_STATUS_LENGTH_MISMATCH && none == NULL, "mask length");
    memset(mask, 0, n);
    p.sample_mask_len = n;
    CHECK(hpsf_new_f64(lon, lat, n, &p, &none) == HPSF_STATUS_INVALID_PARAMETER && none == NULL, "empty mask");
    printf("masked operator: %zu of %zu samples, K = %zu, equal to the subset's\n", m, n, k);
    hpsf_free_f64(op), hpsf_free_f64(sub);
    free(mask), free(sl), free(sa), free(sv), free(h), free(hs), free(back), free(back_s);
}

/* Saving and loading: the loaded operators fit to the same bits; foreign, damaged and missing files
 * give their statuses. */
static void check_saved(hpsf_op_f64 *op, hpsf_op_f32 *op32, const double *val, size_t n, size_t b, size_t k,
                        const hpsf_fit_options *o) {
    char path[4096], bad[4096];
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(path, sizeof path, "%s/hpsf-capi-%d.op", tmp, (int)getpid());
    snprintf(bad, sizeof bad, "%s/hpsf-capi-%d.bad", tmp, (int)getpid());
    CHECK(hpsf_save_f64(op, path) == HPSF_STATUS_OK, "save_f64 (%s)", hpsf_last_error());
    int bytes = 0;
    CHECK(hpsf_saved_precision(path, &bytes) == HPSF_STATUS_OK && bytes == 8, "saved precision %d", bytes);
    hpsf_op_f64 *back = NULL;
    CHECK(hpsf_load_f64(path, -1, 1, &back) == HPSF_STATUS_OK && back != NULL, "load_f64 (%s)", hpsf_last_error());
    size_t kk = 0;
    CHECK(back && hpsf_k_f64(back, &kk) == HPSF_STATUS_OK && kk == k, "loaded K %zu", kk);
    double *h1 = malloc(b * k * sizeof(double)), *h2 = malloc(b * k * sizeof(double));
    CHECK(hpsf_fit_f64(op, val, b * n, o, NULL, 0, h1, b * k, NULL) == HPSF_STATUS_OK &&
              back && hpsf_fit_f64(back, val, b * n, o, NULL, 0, h2, b * k, NULL) == HPSF_STATUS_OK &&
              memcmp(h1, h2, b * k * sizeof(double)) == 0,
          "the loaded operator fits to the same bits");
    hpsf_op_f32 *wrong = NULL;
    CHECK(hpsf_load_f32(path, -1, 0, &wrong) == HPSF_STATUS_BAD_OPERATOR_FILE && wrong == NULL &&
              strstr(hpsf_last_error(), "f64") != NULL,
          "an f64 file loaded as f32: %s", hpsf_last_error());
    CHECK(hpsf_save_f32(op32, path) == HPSF_STATUS_OK && hpsf_saved_precision(path, &bytes) == HPSF_STATUS_OK &&
              bytes == 4,
          "save_f32");
    CHECK(hpsf_load_f32(path, -1, 0, &wrong) == HPSF_STATUS_OK && wrong != NULL, "load_f32 (%s)", hpsf_last_error());
    hpsf_free_f32(wrong);
    FILE *f = fopen(bad, "wb");
    fputs("HPSF-OP\n but nothing after", f);
    fclose(f);
    CHECK(hpsf_load_f64(bad, -1, 0, &back) == HPSF_STATUS_BAD_OPERATOR_FILE, "damaged file: %s", hpsf_last_error());
    CHECK(hpsf_saved_precision(bad, &bytes) == HPSF_STATUS_BAD_OPERATOR_FILE, "damaged file's precision");
    remove(bad);
    remove(path);
    CHECK(hpsf_load_f64(path, -1, 0, &back) == HPSF_STATUS_IO && strstr(hpsf_last_error(), "hpsf-capi") != NULL,
          "a missing file: %s", hpsf_last_error());
    CHECK(hpsf_load_f64(NULL, -1, 0, &back) == HPSF_STATUS_NULL_POINTER, "NULL path");
    CHECK(hpsf_load_f64(path, -1, 0, NULL) == HPSF_STATUS_NULL_POINTER, "NULL out");
    CHECK(hpsf_save_f64(NULL, path) == HPSF_STATUS_NULL_POINTER, "save NULL op");
    CHECK(hpsf_load_f64(path, -7, 0, &back) == HPSF_STATUS_INVALID_PARAMETER, "device -7");
    hpsf_free_f64(back);
    free(h1), free(h2);
}

int main(int argc, char **argv) {
    if (argc != 6 && argc != 9) {
        printf("usage: capi_test CASE_DIR LEVEL NPT LAM CG_ITERS [CLIP_DIR CLIP_LEVEL CLIP_LAM]\n");
        return 2;
    }
    const char *dir = argv[1];
    int level = atoi(argv[2]);
    size_t npt = (size_t)atol(argv[3]);
    double lam = atof(argv[4]);
    size_t cg_iters = (size_t)atol(argv[5]);

    samples sm = read_samples(dir);
    double *lon = sm.lon, *lat = sm.lat, *val = sm.val;
    size_t n = sm.n, b = sm.b, bytes;
    int64_t *gold_ids = read_file(dir, "cell_ids.bin", &bytes);
    size_t k = bytes / sizeof(int64_t);
    double *gold_hval = read_file(dir, "hval.bin", &bytes);
    double *gold_invert = read_file(dir, "invert.bin", &bytes);

    printf("healpix-psf %s (CUDA compiled in: %d); case %s: N = %zu, K = %zu, B = %zu\n", hpsf_version(),
           hpsf_has_cuda(), dir, n, k, b);
    CHECK(strlen(hpsf_version()) > 0, "version string");

    /* ---- build, sizes, cell ids ---- */
    hpsf_params p;
    CHECK(hpsf_params_init(&p, level) == HPSF_STATUS_OK, "params_init");
    CHECK(p.size == sizeof(hpsf_params) && p.npt == 9 && p.nest == 1 && p.device == -1, "defaults");
    p.npt = npt;
    hpsf_op_f64 *op = NULL;
    hpsf_status st = hpsf_new_f64(lon, lat, n, &p, &op);
    CHECK(st == HPSF_STATUS_OK && op != NULL, "new_f64: status %d (%s)", (int)st, hpsf_last_error());
    if (!op) return 1;
    size_t got_n = 0, got_k = 0, got_npt = 0;
    CHECK(hpsf_n_f64(op, &got_n) == HPSF_STATUS_OK && got_n == n, "n = %zu", got_n);
    CHECK(hpsf_k_f64(op, &got_k) == HPSF_STATUS_OK && got_k == k, "k = %zu, golden %zu", got_k, k);
    CHECK(hpsf_npt_f64(op, &got_npt) == HPSF_STATUS_OK && got_npt == npt, "npt");
    int device = 7;
    CHECK(hpsf_device_f64(op, &device) == HPSF_STATUS_OK && device == -1, "device %d", device);
    uint64_t *ids = malloc(k * sizeof(uint64_t));
    CHECK(hpsf_cell_ids_f64(op, ids, k) == HPSF_STATUS_OK, "cell_ids");
    int same = 1;
    for (size_t i = 0; i < k; i++) same &= ids[i] == (uint64_t)gold_ids[i];
    CHECK(same, "cell ids equal the reference's");
    int32_t *hi = malloc(n * npt * sizeof(int32_t));
    CHECK(hpsf_hi_f64(op, hi, n * npt) == HPSF_STATUS_OK && hi[0] >= 0 && hi[0] < (int32_t)k, "hi");

    /* ---- fit and resample against the golden values ---- */
    hpsf_fit_options o;
    CHECK(hpsf_fit_options_init(&o) == HPSF_STATUS_OK && o.max_iter == 100 && o.tol == 1e-8 && o.missing == 0,
          "options defaults");
    o.lam = lam;
    o.missing = 1; /* the reference's zero-filling, for parity */
    hpsf_fit_info info;
    CHECK(hpsf_fit_info_init(&info) == HPSF_STATUS_OK, "info_init");
    size_t stride = o.max_iter + 1;
    size_t *row_it = malloc(b * sizeof(size_t));
    int32_t *conv = malloc(b * sizeof(int32_t));
    double *norms = malloc(b * stride * sizeof(double));
    info.capacity = b;
    info.row_iterations = row_it;
    info.converged = conv;
    info.residual_norms = norms;
    info.norms_stride = stride;
    double *hval = malloc(b * k * sizeof(double));
    double *back = malloc(b * n * sizeof(double));
    st = hpsf_fit_resample_f64(op, val, b * n, &o, NULL, 0, hval, b * k, back, b * n, &info);
    CHECK(st == HPSF_STATUS_OK, "fit_resample: %d (%s)", (int)st, hpsf_last_error());
    double e_hval = rel_err_d(hval, gold_hval, b * k), e_inv = rel_err_d(back, gold_invert, b * n);
    CHECK(e_hval <= 1e-5, "hval error %.3g", e_hval);
    CHECK(e_inv <= 1e-5, "invert error %.3g", e_inv);
    CHECK(info.iterations == cg_iters && info.rows == b, "iterations %zu (reference %zu), rows %zu", info.iterations,
          cg_iters, info.rows);
    CHECK(row_it[0] == cg_iters && norms[0] > 0 && norms[cg_iters] < norms[0], "per-row info");
    CHECK(cg_iters + 1 >= stride || isnan(norms[cg_iters + 1]), "norms padded with NaN");
    printf("fit: hval error %.2e, invert error %.2e, %zu iterations (reference %zu)\n", e_hval, e_inv,
           info.iterations, cg_iters);
    double *again = malloc(b * n * sizeof(double));
    CHECK(hpsf_resample_f64(op, hval, b * k, again, b * n) == HPSF_STATUS_OK &&
              rel_err_d(again, back, b * n) == 0.0,
          "resample equals fit_resample's");
    /* blocks kept from call to call: the same fit, to the bit; then given back */
    size_t held = 1;
    double *kept = malloc(b * k * sizeof(double));
    CHECK(hpsf_keep_blocks_f64(op, 1, &held) == HPSF_STATUS_OK, "keep_blocks (%s)", hpsf_last_error());
    for (int round = 0; round < 2; round++)
        CHECK(hpsf_fit_f64(op, val, b * n, &o, NULL, 0, kept, b * k, NULL) == HPSF_STATUS_OK &&
                  memcmp(kept, hval, b * k * sizeof(double)) == 0,
              "fit %d with blocks kept equals the fit without", round);
    CHECK(hpsf_keep_blocks_f64(op, 0, &held) == HPSF_STATUS_OK && held == 0, "blocks given back: %zu", held);
    CHECK(hpsf_keep_blocks_f64(op, 2, NULL) == HPSF_STATUS_INVALID_PARAMETER, "keep 2");
    CHECK(hpsf_keep_blocks_f64(NULL, 1, NULL) == HPSF_STATUS_NULL_POINTER, "keep_blocks NULL op");
    free(kept);

    /* ---- single precision ---- */
    hpsf_op_f32 *op32 = NULL;
    CHECK(hpsf_new_f32(lon, lat, n, &p, &op32) == HPSF_STATUS_OK, "new_f32 (%s)", hpsf_last_error());
    float *val32 = malloc(b * n * sizeof(float)), *hval32 = malloc(b * k * sizeof(float));
    for (size_t i = 0; i < b * n; i++) val32[i] = (float)val[i];
    CHECK(hpsf_fit_f32(op32, val32, b * n, &o, NULL, 0, hval32, b * k, NULL) == HPSF_STATUS_OK, "fit_f32");
    CHECK(hpsf_keep_blocks_f32(op32, 1, NULL) == HPSF_STATUS_OK, "keep_blocks_f32");
    double e32 = rel_err_f(hval32, gold_hval, b * k);
    CHECK(e32 <= 1e-2, "f32 hval error %.3g", e32);

    /* ---- bad input: statuses, messages, outputs untouched ---- */
    hpsf_op_f64 *none = NULL;
    CHECK(hpsf_new_f64(NULL, lat, n, &p, &none) == HPSF_STATUS_NULL_POINTER && none == NULL, "NULL lon");
    CHECK(strstr(hpsf_last_error(), "lon") != NULL, "message names lon: %s", hpsf_last_error());
    CHECK(hpsf_new_f64(lon, lat, n, &p, NULL) == HPSF_STATUS_NULL_POINTER, "NULL out");
    CHECK(hpsf_new_f64(lon, lat, 0, &p, &none) == HPSF_STATUS_EMPTY_INPUT && none == NULL, "no samples");
    double bad_lat = lat[0];
    lat[0] = 95.0;
    CHECK(hpsf_new_f64(lon, lat, n, &p, &none) == HPSF_STATUS_INVALID_COORDINATE && none == NULL, "lat 95");
    CHECK(strstr(hpsf_last_error(), "latitude") != NULL, "message: %s", hpsf_last_error());
    lat[0] = bad_lat;
    hpsf_params q = p;
    q.level = 40;
    CHECK(hpsf_new_f64(lon, lat, n, &q, &none) == HPSF_STATUS_INVALID_PARAMETER, "level 40");
    q = p;
    q.threshold = 1e9;
    CHECK(hpsf_new_f64(lon, lat, n, &q, &none) == HPSF_STATUS_NO_CELL_PASSED_THRESHOLD, "threshold 1e9");
    q = p;
    q.area_mode = 2; /* explicit areas, but none given */
    CHECK(hpsf_new_f64(lon, lat, n, &q, &none) == HPSF_STATUS_NULL_POINTER, "area NULL");
    q = p;
    q.device = 0;
    st = hpsf_new_f64(lon, lat, n, &q, &none);
    CHECK(st == HPSF_STATUS_DEVICE_UNAVAILABLE || (hpsf_has_cuda() && st == HPSF_STATUS_OK), "device 0: %d", (int)st);
    hpsf_free_f64(none);
    none = NULL;

    for (size_t i = 0; i < b * k; i++) hval[i] = -12345.0;
    CHECK(hpsf_fit_f64(op, val, b * n - 1, &o, NULL, 0, hval, b * k, NULL) == HPSF_STATUS_LENGTH_MISMATCH, "val_len");
    CHECK(hpsf_fit_f64(op, val, b * n, &o, NULL, 0, hval, b * k - 1, NULL) == HPSF_STATUS_LENGTH_MISMATCH, "hval_len");
    CHECK(hpsf_fit_f64(op, val, b * n, &o, NULL, 0, NULL, b * k, NULL) == HPSF_STATUS_NULL_POINTER, "NULL hval");
    int untouched = 1;
    for (size_t i = 0; i < b * k; i++) untouched &= hval[i] == -12345.0;
    CHECK(untouched, "outputs written only on success");
    hpsf_fit_options bad = o;
    bad.lam = -1.0;
    CHECK(hpsf_fit_f64(op, val, b * n, &bad, NULL, 0, hval, b * k, NULL) == HPSF_STATUS_INVALID_PARAMETER, "lam -1");
    bad = o;
    bad.tol = 0.0;
    CHECK(hpsf_fit_f64(op, val, b * n, &bad, NULL, 0, hval, b * k, NULL) == HPSF_STATUS_INVALID_PARAMETER, "tol 0");
    bad = o;
    bad.stopping = 5;
    CHECK(hpsf_fit_f64(op, val, b * n, &bad, NULL, 0, hval, b * k, NULL) == HPSF_STATUS_INVALID_PARAMETER, "stopping 5");
    bad = o;
    bad.missing = 2;
    CHECK(hpsf_fit_f64(op, val, b * n, &bad, NULL, 0, hval, b * k, NULL) == HPSF_STATUS_INVALID_PARAMETER, "missing 2");
    bad = o;
    bad.missing = 0;
    bad.empty_cells = 1; /* the reference's numbers for cells without data need its zero-filling */
    CHECK(hpsf_fit_f64(op, val, b * n, &bad, NULL, 0, hval, b * k, NULL) == HPSF_STATUS_INVALID_PARAMETER &&
              strstr(hpsf_last_error(), "ZeroFill") != NULL,
          "empty_cells 1 with per-row missing data: %s", hpsf_last_error());
    double saved = val[3];
    val[3] = INFINITY;
    CHECK(hpsf_fit_f64(op, val, b * n, &o, NULL, 0, hval, b * k, NULL) == HPSF_STATUS_INVALID_VALUE, "inf value");
    val[3] = saved;
    CHECK(hpsf_fit_f64(op, val, b * n, &o, val, 3, hval, b * k, NULL) == HPSF_STATUS_LENGTH_MISMATCH, "x0 length");
    hpsf_fit_info small;
    hpsf_fit_info_init(&small);
    small.capacity = 0;
    small.converged = conv;
    CHECK(hpsf_fit_f64(op, val, b * n, &o, NULL, 0, hval, b * k, &small) == HPSF_STATUS_LENGTH_MISMATCH,
          "info capacity too small");
    CHECK(hpsf_n_f64(NULL, &got_n) == HPSF_STATUS_NULL_POINTER, "NULL op");
    CHECK(hpsf_n_f64(op, NULL) == HPSF_STATUS_NULL_POINTER, "NULL out");
    CHECK(hpsf_cell_ids_f64(op, ids, k + 1) == HPSF_STATUS_LENGTH_MISMATCH, "cell_ids length");
    CHECK(hpsf_resample_f64(NULL, hval, b * k, back, b * n) == HPSF_STATUS_NULL_POINTER, "resample NULL op");
    CHECK(hpsf_params_init(NULL, 3) == HPSF_STATUS_NULL_POINTER, "params_init NULL");

    /* an older caller's shorter hpsf_params: fields it does not know keep their defaults */
    hpsf_params old;
    hpsf_params_init(&old, level);
    old.size = offsetof(hpsf_params, ring_weight);
    old.npt = npt;
    old.device = 5; /* beyond its size: must be ignored (CPU) */
    hpsf_op_f64 *op_old = NULL;
    CHECK(hpsf_new_f64(lon, lat, n, &old, &op_old) == HPSF_STATUS_OK, "short params (%s)", hpsf_last_error());
    int dev_old = 9;
    CHECK(hpsf_device_f64(op_old, &dev_old) == HPSF_STATUS_OK && dev_old == -1, "short params device %d", dev_old);

    check_masked(lon, lat, val, n, b, &p, lam);
    check_saved(op, op32, val, n, b, k, &o);

    hpsf_free_f64(op_old);
    hpsf_free_f64(op);
    hpsf_free_f32(op32);
    hpsf_free_f64(NULL);
    hpsf_free_f32(NULL);
    free(lon), free(lat), free(val), free(gold_ids), free(gold_hval), free(gold_invert), free(ids), free(hi);
    free(row_it), free(conv), free(norms), free(hval), free(back), free(again), free(val32), free(hval32);
    if (argc > 8) check_bounded(argv[6], atoi(argv[7]), atof(argv[8]));
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
