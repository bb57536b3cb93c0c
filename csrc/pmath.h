// The elementary functions of the construction written once for the host and the device: sin, cos,
// asin, acos and exp in double precision, from additions, products, divisions and square roots only
// (each rounded once by IEEE 754 on both sides: no libm, no contraction of a·b + c into an FMA, an
// explicit fma() only where an exact product error is wanted). glibc's and CUDA's libm differ in the
// last bits (CUDA's sin, cos, asin, acos and exp are documented to 1–2 ulp), and a construction
// makes discrete choices from these values — which cell a sample hashes to, which kept cell is
// nearer, whether a weight sum reaches the threshold — so the CPU and the GPU must compute the
// same bits to build the same operator. These do, by construction.
//
// The polynomials are Chebyshev fits (near-minimax) made by scripts/pmath_coefficients.py with
// mpmath, whose fit errors stay below 2^-64 of the result; the arguments are reduced with a
// three-part π/2 or a two-part ln 2/64 (the high parts short enough that their products with the
// quotient are exact) and exp uses a table of 2^(j/64) in two parts. Accuracy against a 200-bit
// reference (mpmath, 10^5 random points per range): sin and cos within 0.74 ulp on [−7, 7], asin
// and acos within 0.63 ulp, exp within 0.52 ulp wherever the result is a normal number. The tests
// (src/geometry/portable.rs) hold them within one ulp of glibc's.
//
// Ranges: sin and cos are meant for |x| < 2^19 (the construction passes angles below 4π); beyond,
// the reduction loses accuracy. asin and acos take [−1, 1] (NaN outside), exp any double.
#ifndef HPSF_PMATH_H
#define HPSF_PMATH_H

#include <math.h>
#include <stdint.h>

// The same definition as rules.h's (an identical redefinition is allowed).
#ifdef __CUDACC__
#define HPSF_HD __host__ __device__ inline
#else
#define HPSF_HD inline
#endif

/// a·b rounded once and never fused with a following sum: nvcc contracts a·b + c into an FMA by
/// default, Rust and the host build (-ffp-contract=off) do not.
HPSF_HD double hpsf_mul(double a, double b) {
#ifdef __CUDA_ARCH__
    return __dmul_rn(a, b);
#else
    return a * b;
#endif
}

/// Σ c[i]·z^i for i < n by Horner's rule, each product rounded on its own.
HPSF_HD double hpsf_poly(const double *c, int n, double z) {
    double acc = c[n - 1];
    for (int i = n - 2; i >= 0; --i) acc = c[i] + hpsf_mul(acc, z);
    return acc;
}

/// A value as an unevaluated sum hi + lo, |lo| ≤ ulp(hi)/2.
struct hpsf_dd {
    double hi;
    double lo;
};

/// a + b exactly as hi + lo (Knuth's two-sum, any order of magnitude).
HPSF_HD hpsf_dd hpsf_two_sum(double a, double b) {
    double s = a + b;
    double bb = s - a;
    return {s, (a - (s - bb)) + (b - bb)};
}

/// a² exactly as hi + lo (Dekker's product with Veltkamp's split: no fma, which the host would
/// have to call from libm).
HPSF_HD hpsf_dd hpsf_two_square(double a) {
    double c = hpsf_mul(134217729.0, a);  // 2^27 + 1
    double a_hi = c - (c - a);
    double a_lo = a - a_hi;
    double p = hpsf_mul(a, a);
    double e = ((hpsf_mul(a_hi, a_hi) - p) + hpsf_mul(2.0 * a_hi, a_lo)) + hpsf_mul(a_lo, a_lo);
    return {p, e};
}

/// x rounded to the nearest integer (ties to even), for |x| < 2^51: the classic shift by 1.5·2^52.
HPSF_HD double hpsf_round_int(double x) {
    const double shift = 6755399441055744.0;
    return (x + shift) - shift;
}

// ---- sin and cos -----------------------------------------------------------------------------------

// π/2 in three parts: P1 and P2 hold 33 bits each, so k·P1 and k·P2 are exact for |k| < 2^20.
#define HPSF_PIO2_1 1.5707963267341256
#define HPSF_PIO2_2 6.077100506303966e-11
#define HPSF_PIO2_3 2.0222662487959506e-21
#define HPSF_TWO_OVER_PI 0.6366197723675814

/// sin(rh + rl) for |rh| ≤ π/4, |rl| ≤ ulp(rh): rh + rh³·S(rh²) + rl·(1 − rh²/2), S of degree 6.
HPSF_HD double hpsf_sin_kernel(double rh, double rl) {
    const double s[7] = {
        -0.16666666666666666,
        0.008333333333333331,
        -0.00019841269841265065,
        2.7557319219339167e-06,
        -2.5052106232447578e-08,
        1.6058531618986147e-10,
        -7.586697117706918e-13};
    double z = hpsf_mul(rh, rh);
    double tail = hpsf_mul(hpsf_mul(rh, z), hpsf_poly(s, 7, z)) + hpsf_mul(rl, 1.0 - hpsf_mul(0.5, z));
    return rh + tail;
}

/// cos(rh + rl) for |rh| ≤ π/4: 1 − rh²/2 with the rounding of both steps carried (rh² exact as a
/// two-product), + rh⁴·C(rh²) − rh·rl, C of degree 6.
HPSF_HD double hpsf_cos_kernel(double rh, double rl) {
    const double c[7] = {
        0.041666666666666664,
        -0.0013888888888888887,
        2.4801587301584645e-05,
        -2.7557319221402824e-07,
        2.087675579108042e-09,
        -1.1470460887609959e-11,
        4.7458719020432915e-14};
    hpsf_dd sq = hpsf_two_square(rh);
    double z = sq.hi, z_err = sq.lo;
    double hz = 0.5 * z;
    double w = 1.0 - hz;  // |hz| ≤ 0.31: 1 − w and (1 − w) − hz are exact
    double tail = (((1.0 - w) - hz) - 0.5 * z_err) + (hpsf_mul(hpsf_mul(z, z), hpsf_poly(c, 7, z)) - hpsf_mul(rh, rl));
    return w + tail;
}

/// sin x and cos x from one reduction x = k·π/2 + r.
HPSF_HD void hpsf_sincos(double x, double *sin_x, double *cos_x) {
    if (!(fabs(x) < 1e300)) {
        *sin_x = *cos_x = x - x;  // NaN for NaN and ±∞
        return;
    }
    if (fabs(x) < 7.450580596923828e-09) {  // 2^-27: sin x = x, cos x = 1 to rounding (and sin ±0 = ±0)
        *sin_x = x;
        *cos_x = 1.0;
        return;
    }
    double k = hpsf_round_int(hpsf_mul(x, HPSF_TWO_OVER_PI));
    // x − k·P1 is exact (Sterbenz), so is the two-sum with −k·P2; the last part is rounded
    hpsf_dd r = hpsf_two_sum(x - hpsf_mul(k, HPSF_PIO2_1), -hpsf_mul(k, HPSF_PIO2_2));
    r.lo -= hpsf_mul(k, HPSF_PIO2_3);
    hpsf_dd t = hpsf_two_sum(r.hi, r.lo);
    double s = hpsf_sin_kernel(t.hi, t.lo);
    double c = hpsf_cos_kernel(t.hi, t.lo);
    switch (((int64_t)k) & 3) {
        case 0: *sin_x = s; *cos_x = c; break;
        case 1: *sin_x = c; *cos_x = -s; break;
        case 2: *sin_x = -s; *cos_x = -c; break;
        default: *sin_x = -c; *cos_x = s; break;
    }
}

HPSF_HD double hpsf_sin(double x) {
    double s, c;
    hpsf_sincos(x, &s, &c);
    return s;
}

HPSF_HD double hpsf_cos(double x) {
    double s, c;
    hpsf_sincos(x, &s, &c);
    return c;
}

// ---- asin and acos ---------------------------------------------------------------------------------

#define HPSF_PIO2_HI 1.5707963267948966
#define HPSF_PIO2_LO 6.123233995736766e-17
#define HPSF_PI_HI 3.141592653589793
#define HPSF_PI_LO 1.2246467991473532e-16

/// (asin(x) − x)/x for |x| ≤ 1/2, as x²·A(x²) with A of degree 14.
HPSF_HD double hpsf_asin_tail(double z) {
    const double c[15] = {
        0.16666666666666666,
        0.07499999999999991,
        0.0446428571428834,
        0.030381944441363808,
        0.02237215927967998,
        0.017352757477819787,
        0.013965009932053607,
        0.011549086612987425,
        0.009792751320201996,
        0.008135829925501657,
        0.00879500607648843,
        0.000380853033290726,
        0.022553563638202982,
        -0.024020544918554605,
        0.030718768995191097};
    return hpsf_mul(z, hpsf_poly(c, 15, z));
}

/// asin(s) − s for 0 ≤ s ≤ 1/2 given z = s² exactly (s = √z rounded): the series at s plus the
/// correction for the rounding of the square root, (z − s²)/(2s).
HPSF_HD double hpsf_asin_of_sqrt_tail(double s, double z) {
    double root_err = s > 0.0 ? fma(-s, s, z) / (s + s) : 0.0;
    return root_err + hpsf_mul(s, hpsf_asin_tail(z));
}

/// asin x for x in [−1, 1]: the series up to 1/2; above, π/2 − 2·asin(√((1 − |x|)/2)).
HPSF_HD double hpsf_asin(double x) {
    double a = fabs(x);
    if (!(a <= 1.0)) return (x - x) / (x - x);  // NaN
    if (a < 7.450580596923828e-09) return x;
    double r;
    if (a <= 0.5) {
        r = a + hpsf_mul(a, hpsf_asin_tail(hpsf_mul(a, a)));
    } else {
        double z = 0.5 * (1.0 - a);  // exact
        double s = sqrt(z);
        hpsf_dd h = hpsf_two_sum(HPSF_PIO2_HI, -2.0 * s);
        r = h.hi + (h.lo + (HPSF_PIO2_LO - 2.0 * hpsf_asin_of_sqrt_tail(s, z)));
    }
    return x < 0.0 ? -r : r;
}

/// acos x for x in [−1, 1]: π/2 − asin x up to |x| = 1/2; above, 2·asin(√((1 − x)/2)), or
/// π − 2·asin(√((1 + x)/2)) below −1/2.
HPSF_HD double hpsf_acos(double x) {
    double a = fabs(x);
    if (!(a <= 1.0)) return (x - x) / (x - x);  // NaN
    if (a <= 0.5) {
        hpsf_dd h = hpsf_two_sum(HPSF_PIO2_HI, -x);
        double tail = a < 7.450580596923828e-09 ? 0.0 : hpsf_mul(x, hpsf_asin_tail(hpsf_mul(x, x)));
        return h.hi + (h.lo + (HPSF_PIO2_LO - tail));
    }
    double z = 0.5 * (1.0 - a);  // exact
    double s = sqrt(z);
    double t = hpsf_asin_of_sqrt_tail(s, z);
    if (x > 0.0) return 2.0 * s + 2.0 * t;
    hpsf_dd h = hpsf_two_sum(HPSF_PI_HI, -2.0 * s);
    return h.hi + (h.lo + (HPSF_PI_LO - 2.0 * t));
}

// ---- exp ---------------------------------------------------------------------------------------------

// e^x = 2^m · 2^(j/64) · e^r: x = k·ln2/64 + r with k = 64m + j, |r| ≤ ln 2/128. ln 2/64 in two
// parts, the high one of 36 bits so that k·LN2_64_HI is exact for |k| < 2^17 (every x with a
// finite, non-zero result).
#define HPSF_LN2_64_HI 0.010830424696223417
#define HPSF_LN2_64_LO 2.572804622327669e-14
#define HPSF_INV_LN2_64 92.33248261689366
// 2^(j/64) for j = 0..63 as hi, lo pairs (hi the nearest double, lo the rest rounded).
#define HPSF_EXP2_TABLE \
    {1.0, 0.0, \
     1.0108892860517005, -1.5234778603368577e-17, \
     1.0218971486541166, 5.109225028973444e-17, \
     1.0330248790212284, 7.600838874027088e-18, \
     1.0442737824274138, 8.551889705537965e-17, \
     1.0556451783605572, 1.759325738772092e-18, \
     1.0671404006768237, -7.899853966841582e-17, \
     1.0787607977571199, -6.656660436056593e-17, \
     1.0905077326652577, -3.046782079812471e-17, \
     1.102382583307841, 5.2660368715706944e-17, \
     1.1143867425958924, 1.0410278456845571e-16, \
     1.1265216186082418, 5.165856758795457e-17, \
     1.1387886347566916, 8.912812676025408e-17, \
     1.1511892299529827, 3.250710218863827e-17, \
     1.1637248587775775, 3.8292048369240935e-17, \
     1.1763969916502812, 5.554203254218079e-17, \
     1.189207115002721, 3.982015231465646e-17, \
     1.202156731452703, 6.644981499252301e-17, \
     1.215247359980469, -7.712630692681488e-17, \
     1.22848053610687, -1.89878163130253e-17, \
     1.241857812073484, 4.658027591836937e-17, \
     1.255380757024691, -6.7113898212968784e-18, \
     1.2690509571917332, 2.667932131342186e-18, \
     1.2828700160787783, 1.713594918243561e-17, \
     1.2968395546510096, 2.5382502794888315e-17, \
     1.3109612115247644, -7.181536135519454e-17, \
     1.3252366431597413, -2.8587312100388614e-17, \
     1.339667524053303, 8.927282594831732e-17, \
     1.3542555469368927, 7.70094837980299e-17, \
     1.3690024229745905, 9.593797919118849e-17, \
     1.383909881963832, -6.770511658794786e-17, \
     1.3989796725383112, -9.614213209051323e-17, \
     1.4142135623730951, -9.667293313452913e-17, \
     1.42961333839197, -1.2031642489053655e-17, \
     1.4451808069770467, -3.0237581349939873e-17, \
     1.460917794180647, -5.600377186075216e-17, \
     1.4768261459394993, -3.483994556892796e-17, \
     1.4929077282912648, 1.4192920154284036e-17, \
     1.5091644275934228, -1.016455327754295e-16, \
     1.5255981507445384, -1.1024941712342561e-16, \
     1.5422108254079407, 7.949834809697621e-17, \
     1.559004400237837, 3.7812070533575275e-17, \
     1.5759808451078865, -1.0136916471278304e-17, \
     1.593142151342267, -1.0094406542311964e-16, \
     1.6104903319492543, 2.4707192569797888e-17, \
     1.6280274218573478, -6.712955084707084e-17, \
     1.645755478153965, -1.0125679913674773e-16, \
     1.6636765803267364, 5.8909926967131e-17, \
     1.681792830507429, 8.199010020581497e-17, \
     1.7001063537185235, -8.0237193703977e-18, \
     1.718619298122478, -1.851380418263111e-17, \
     1.7373338352737062, 3.164389299292957e-17, \
     1.7562521603732995, 2.960140695448873e-17, \
     1.7753764925265212, 6.429731796556572e-17, \
     1.7947090750031072, 1.8227458427912087e-17, \
     1.8142521755003989, -9.969531538920349e-17, \
     1.8340080864093424, 3.283107224245627e-17, \
     1.8539791250833855, 9.761887490727594e-17, \
     1.8741676341103, -6.122763413004143e-17, \
     1.8945759815869656, 3.4034035352165297e-17, \
     1.9152065613971474, -1.0619946056195963e-16, \
     1.9360617934922943, 1.0332385960676326e-16, \
     1.9571441241754002, 8.960767791036668e-17, \
     1.978456026387951, 4.0388753109278167e-17}

// One copy for each side (a __device__ variable may not depend on __CUDA_ARCH__); each function
// body reads its own.
#ifdef __CUDACC__
__device__ const double hpsf_exp2_table_device[128] = HPSF_EXP2_TABLE;
#endif
static const double hpsf_exp2_table_host[128] = HPSF_EXP2_TABLE;
#ifdef __CUDA_ARCH__
#define HPSF_EXP2_AT(i) hpsf_exp2_table_device[i]
#else
#define HPSF_EXP2_AT(i) hpsf_exp2_table_host[i]
#endif

/// 2^k as a double for −1022 ≤ k ≤ 1023.
HPSF_HD double hpsf_pow2(int64_t k) {
    union {
        uint64_t u;
        double d;
    } v;
    v.u = (uint64_t)(k + 1023) << 52;
    return v.d;
}

/// e^x: 2^(j/64)·(1 + p(r)) with p(r) = e^r − 1 to degree 6 (Taylor; the first omitted term is below
/// 2^-64), the table's low part and the product added to its high part last, then scaled by 2^m
/// (in two steps where the result is subnormal, so that it is rounded once).
HPSF_HD double hpsf_exp(double x) {
    if (x != x) return x;
    if (x > 709.782712893384) return INFINITY;
    if (x < -745.1332191019412) return 0.0;
    double kd = hpsf_round_int(hpsf_mul(x, HPSF_INV_LN2_64));
    double r = (x - hpsf_mul(kd, HPSF_LN2_64_HI)) - hpsf_mul(kd, HPSF_LN2_64_LO);  // the first difference is exact
    // r + r²·(1/2 + r/6 + r²·(1/24 + r/120) + r⁴/720), grouped (Estrin) to shorten the chain
    double r2 = hpsf_mul(r, r);
    double a = 0.5 + hpsf_mul(r, 1.0 / 6.0);
    double b = 1.0 / 24.0 + hpsf_mul(r, 1.0 / 120.0);
    double q = (a + hpsf_mul(r2, b)) + hpsf_mul(hpsf_mul(r2, r2), 1.0 / 720.0);
    double p = r + hpsf_mul(r2, q);
    int64_t k = (int64_t)kd;
    int64_t j = k & 63;
    int64_t m = (k - j) / 64;
    double t_hi = HPSF_EXP2_AT(2 * j), t_lo = HPSF_EXP2_AT(2 * j + 1);
    double e = t_hi + (t_lo + hpsf_mul(t_hi, p));
    if (m >= -1021) return m <= 1023 ? hpsf_mul(e, hpsf_pow2(m)) : hpsf_mul(hpsf_mul(e, 2.0), hpsf_pow2(m - 1));
    return hpsf_mul(hpsf_mul(e, hpsf_pow2(m + 1000)), hpsf_pow2(-1000));
}

/// e^x for a float: the double e^x rounded to float (the same bits on every device; correctly
/// rounded but where the double lies within its own error of a float midpoint).
HPSF_HD float hpsf_expf(float x) { return (float)hpsf_exp((double)x); }

#endif
