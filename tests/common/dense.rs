//! Dense f64 copies of an operator and a small LU solver: the independent reference of the
//! solver tests.

use healpix_psf::{PsfResampler, Real};

/// The values as f64.
pub fn to_f64s<F: Real>(v: &[F]) -> Vec<f64> {
    v.iter().map(|x| x.to_f64()).collect()
}

/// The dense operators of `op`, in f64, from the triplets.
pub struct Dense {
    pub n: usize,
    pub k: usize,
    /// N×K row-major.
    pub m: Vec<f64>,
    /// K×N row-major.
    pub mt: Vec<f64>,
    pub dx: Vec<f64>,
}

/// `y (rows) · A (rows×cols)`.
pub fn vec_mat(y: &[f64], a: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    assert_eq!(y.len(), rows);
    let mut out = vec![0.0; cols];
    for (r, &yr) in y.iter().enumerate() {
        if yr != 0.0 {
            for (o, &v) in out.iter_mut().zip(&a[r * cols..(r + 1) * cols]) {
                *o += yr * v;
            }
        }
    }
    out
}

/// LU factorisation with partial pivoting of A (n×n row-major); None when singular.
pub fn lu_factor(mut a: Vec<f64>, n: usize) -> Option<(Vec<f64>, Vec<usize>)> {
    let mut perm: Vec<usize> = (0..n).collect();
    for c in 0..n {
        let p = (c..n).max_by(|&i, &j| a[i * n + c].abs().total_cmp(&a[j * n + c].abs())).unwrap();
        if a[p * n + c] == 0.0 {
            return None;
        }
        if p != c {
            for j in 0..n {
                a.swap(c * n + j, p * n + j);
            }
            perm.swap(c, p);
        }
        let (top, bottom) = a.split_at_mut((c + 1) * n);
        let pivot_row = &top[c * n..];
        for i in 0..n - c - 1 {
            let row = &mut bottom[i * n..(i + 1) * n];
            let f = row[c] / pivot_row[c];
            row[c] = f;
            if f != 0.0 {
                for j in c + 1..n {
                    row[j] -= f * pivot_row[j];
                }
            }
        }
    }
    Some((a, perm))
}

pub fn lu_apply(lu: &(Vec<f64>, Vec<usize>), b: &[f64]) -> Vec<f64> {
    let (a, perm) = lu;
    let n = perm.len();
    let mut y: Vec<f64> = perm.iter().map(|&p| b[p]).collect();
    for i in 0..n {
        let s: f64 = (0..i).map(|j| a[i * n + j] * y[j]).sum();
        y[i] -= s;
    }
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|j| a[i * n + j] * y[j]).sum();
        y[i] = (y[i] - s) / a[i * n + i];
    }
    y
}

impl Dense {
    pub fn new<F: Real>(op: &PsfResampler<F>) -> Dense {
        let (n, k) = (op.n(), op.k());
        let (tm, tmt) = (op.m_triplets(), op.mt_triplets());
        assert_eq!((tm.n_rows, tm.n_cols, tmt.n_rows, tmt.n_cols), (n, k, k, n));
        let mut m = vec![0.0; n * k];
        for ((&i, &c), &v) in tm.rows.iter().zip(&tm.cols).zip(&tm.vals) {
            m[i as usize * k + c as usize] = v.to_f64();
        }
        let mut mt = vec![0.0; k * n];
        for ((&c, &i), &v) in tmt.rows.iter().zip(&tmt.cols).zip(&tmt.vals) {
            mt[c as usize * n + i as usize] = v.to_f64();
        }
        Dense { n, k, m, mt, dx: to_f64s(op.cell_weight()) }
    }

    /// `y0·M` with NaN samples as 0.
    pub fn apply_m(&self, y: &[f64]) -> Vec<f64> {
        let y0: Vec<f64> = y.iter().map(|&v| if v.is_nan() { 0.0 } else { v }).collect();
        vec_mat(&y0, &self.m, self.n, self.k)
    }

    /// `h·MT`.
    pub fn resample(&self, h: &[f64]) -> Vec<f64> {
        vec_mat(h, &self.mt, self.k, self.n)
    }

    /// `A = MT·M + λI` (K×K).
    pub fn normal_matrix(&self, lam: f64) -> Vec<f64> {
        let (n, k) = (self.n, self.k);
        let mut a = vec![0.0; k * k];
        for r in 0..k {
            let row = vec_mat(&self.mt[r * n..(r + 1) * n], &self.m, n, k);
            a[r * k..(r + 1) * k].copy_from_slice(&row);
            a[r * k + r] += lam;
        }
        a
    }

    /// (x_ref, rhs) of one row.
    pub fn rhs(&self, y: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let x_ref = self.apply_m(y);
        let back = self.resample(&x_ref);
        let e: Vec<f64> = y.iter().zip(&back).map(|(&v, &b)| if v.is_nan() { 0.0 } else { v } - b).collect();
        (x_ref, vec_mat(&e, &self.m, self.n, self.k))
    }

    /// δ·A.
    pub fn times_a(&self, d: &[f64], a: &[f64]) -> Vec<f64> {
        vec_mat(d, a, self.k, self.k)
    }

    /// LU factors of Aᵀ: δ·A = rhs is solved as Aᵀ δᵀ = rhsᵀ (A is not symmetric, only self-adjoint in
    /// the Dx inner product). None when exactly singular.
    pub fn factor(&self, lam: f64) -> Option<(Vec<f64>, Vec<usize>)> {
        let k = self.k;
        let a = self.normal_matrix(lam);
        let mut at = vec![0.0; k * k];
        for i in 0..k {
            for j in 0..k {
                at[j * k + i] = a[i * k + j];
            }
        }
        lu_factor(at, k)
    }

    /// (x_ref, δ) with δ·A = rhs solved densely.
    pub fn solve(&self, y: &[f64], lam: f64) -> (Vec<f64>, Vec<f64>) {
        let lu = self.factor(lam).expect("A is nonsingular");
        let (x_ref, rhs) = self.rhs(y);
        let delta = lu_apply(&lu, &rhs);
        // the LU solution itself must satisfy the system
        let res: Vec<f64> =
            rhs.iter().zip(self.times_a(&delta, &self.normal_matrix(lam))).map(|(r, v)| r - v).collect();
        assert!(self.dx_norm(&res) <= 1e-12 * self.dx_norm(&rhs), "dense LU residual too large");
        (x_ref, delta)
    }

    /// The condition number of A in the Dx norm: A is self-adjoint there with ‖A‖ ≤ 1 + λ (MT and M are
    /// averages), so κ ≈ (1 + λ)·‖A⁻¹‖_Dx, estimated by inverse power iteration (∞ when singular).
    pub fn cond(&self, lam: f64) -> f64 {
        let Some(lu) = self.factor(lam) else { return f64::INFINITY };
        let mut v = vec![1.0; self.k];
        let mut inv_norm = 0.0;
        for _ in 0..300 {
            let w = lu_apply(&lu, &v);
            let nw = self.dx_norm(&w);
            inv_norm = nw / self.dx_norm(&v);
            v = w.iter().map(|x| x / nw).collect();
        }
        (1.0 + lam) * inv_norm
    }

    pub fn dx_norm(&self, v: &[f64]) -> f64 {
        v.iter().zip(&self.dx).map(|(x, w)| x * x * w).sum::<f64>().sqrt()
    }
}

/// One row's problem with its missing samples left out (`MissingData::PerRow`), densely: the cells
/// in which a valid sample carries weight, x_ref (K, 0 elsewhere), and on those cells the normal
/// matrix `A = MT·diag(valid)·M + λI` (row convention: δ·A = rhs) and the right-hand side.
pub struct PerRow {
    pub cells: Vec<usize>,
    pub x_ref: Vec<f64>,
    pub a: Vec<f64>,
    pub rhs: Vec<f64>,
}

impl Dense {
    /// The per-row problem of the row `y` (NaN = missing).
    pub fn per_row(&self, y: &[f64], lam: f64) -> PerRow {
        let (n, k) = (self.n, self.k);
        let valid: Vec<f64> = y.iter().map(|v| if v.is_nan() { 0.0 } else { 1.0 }).collect();
        let y0: Vec<f64> = y.iter().map(|&v| if v.is_nan() { 0.0 } else { v }).collect();
        let w = vec_mat(&valid, &self.m, n, k);
        let num = vec_mat(&y0, &self.m, n, k);
        let cells: Vec<usize> = (0..k).filter(|&c| w[c] != 0.0).collect();
        let x_ref: Vec<f64> = (0..k).map(|c| if w[c] != 0.0 { num[c] / w[c] } else { 0.0 }).collect();
        let back = self.resample(&x_ref);
        let e: Vec<f64> = (0..n).map(|i| valid[i] * (y0[i] - back[i])).collect();
        let rhs_all = vec_mat(&e, &self.m, n, k);
        let kk = cells.len();
        let mut a = vec![0.0; kk * kk];
        for (ra, &r) in cells.iter().enumerate() {
            let masked: Vec<f64> = (0..n).map(|i| self.mt[r * n + i] * valid[i]).collect();
            let row = vec_mat(&masked, &self.m, n, k);
            for (ca, &c) in cells.iter().enumerate() {
                a[ra * kk + ca] = row[c] + if r == c { lam } else { 0.0 };
            }
        }
        PerRow { rhs: cells.iter().map(|&c| rhs_all[c]).collect(), cells, x_ref, a }
    }

    /// hval of the row `y` fitted with its missing samples left out, by a dense LU solve; NaN on the
    /// cells where no valid sample carries weight.
    pub fn solve_per_row(&self, y: &[f64], lam: f64) -> Vec<f64> {
        let p = self.per_row(y, lam);
        let kk = p.cells.len();
        let mut at = vec![0.0; kk * kk];
        for i in 0..kk {
            for j in 0..kk {
                at[j * kk + i] = p.a[i * kk + j];
            }
        }
        let delta = lu_apply(&lu_factor(at, kk).expect("the per-row system is nonsingular"), &p.rhs);
        let mut h = vec![f64::NAN; self.k];
        for (i, &c) in p.cells.iter().enumerate() {
            h[c] = p.x_ref[c] + delta[i];
        }
        h
    }
}
