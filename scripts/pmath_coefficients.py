#!/usr/bin/env python3
"""Derives the polynomial coefficients of csrc/pmath.h and prints them as C literals.

Each is a Chebyshev fit (near-minimax) in z = r^2 computed with mpmath at 200 bits, then rounded
to doubles; the printed `err` is the fit's largest absolute error on the interval:

  sin:  (sin r - r)/r^3          on z in [0, (pi/4)^2], degree 6
  cos:  (cos r - 1 + r^2/2)/r^4  on z in [0, (pi/4)^2], degree 6
  asin: (asin x - x)/x^3         on z in [0, 1/4],      degree 14

and the table of 2^(j/64), j = 0..63, as (nearest double, rest rounded) pairs for exp.
Run: python3 scripts/pmath_coefficients.py   (needs mpmath)
"""
import mpmath

mpmath.mp.prec = 200
TINY = mpmath.mpf(10) ** -40


def fit(name, f, hi, degree):
    poly, err = mpmath.chebyfit(f, [TINY, mpmath.mpf(hi)], degree + 1, error=True)
    coeffs = [float(c) for c in reversed(poly)]  # lowest degree first
    print(f"// {name}: degree {degree}, fit error {mpmath.nstr(err, 3)}")
    print("{" + ", ".join(repr(c) for c in coeffs) + "}")


def main():
    root = mpmath.sqrt
    fit("sin", lambda z: (mpmath.sin(root(z)) - root(z)) / root(z) ** 3, (mpmath.pi / 4) ** 2, 6)
    fit("cos", lambda z: (mpmath.cos(root(z)) - 1 + z / 2) / z**2, (mpmath.pi / 4) ** 2, 6)
    fit("asin", lambda z: (mpmath.asin(root(z)) - root(z)) / root(z) ** 3, mpmath.mpf(1) / 4, 14)
    print("// 2^(j/64)")
    for j in range(64):
        t = mpmath.mpf(2) ** (mpmath.mpf(j) / 64)
        print(f"{float(t)!r}, {float(t - mpmath.mpf(float(t)))!r},")


if __name__ == "__main__":
    main()
