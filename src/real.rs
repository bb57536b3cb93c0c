//! The floating-point types an operator can be built in: `f32` and `f64`.
//!
//! Geometry (coordinates, distances, the keep stage) is always computed in `f64`; the operator's
//! distances, weights and values are stored in the chosen type, as the reference does (SPEC §3).

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// The element type of an operator: implemented for `f32` and `f64` only.
pub trait Real:
    sealed::Sealed
    + Copy
    + Send
    + Sync
    + 'static
    + Debug
    + Display
    + Default
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + Sum
{
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// +infinity (marks a missing link in `d_m`).
    const INFINITY: Self;
    /// The machine epsilon (distance from 1 to the next larger number).
    const EPSILON: Self;
    /// The type's name as numpy spells it (`"float32"`, `"float64"`).
    const NAME: &'static str;
    /// Whether this is `f64` (the backends pick their f32 or f64 kernels by it).
    #[doc(hidden)]
    const IS_F64: bool;
    /// Conversion from `f64` (rounding to nearest for `f32`).
    fn from_f64(x: f64) -> Self;
    /// Exact conversion to `f64`.
    fn to_f64(self) -> f64;
    /// e^self: the portable exp of `csrc/pmath.h` (what the GPU computes, bit for bit; for `f32` the
    /// double's rounded to float).
    fn exp(self) -> Self;
    /// √self.
    fn sqrt(self) -> Self;
    /// |self|.
    fn abs(self) -> Self;
    /// Is NaN.
    fn is_nan(self) -> bool;
    /// Is neither NaN nor infinite.
    fn is_finite(self) -> bool;
}

macro_rules! impl_real {
    ($t:ty, $name:literal, $is_f64:literal, $exp:path) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const INFINITY: Self = <$t>::INFINITY;
            const EPSILON: Self = <$t>::EPSILON;
            const NAME: &'static str = $name;
            const IS_F64: bool = $is_f64;
            #[inline(always)]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn exp(self) -> Self {
                $exp(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            #[inline(always)]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
        }
    };
}
impl_real!(f32, "float32", false, crate::geometry::portable::expf);
impl_real!(f64, "float64", true, crate::geometry::portable::exp);
