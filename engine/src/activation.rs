//! Activation functions, as scalar reference code: the CPU kernels call it and
//! shaders/activation.wgsl computes the same formulas (tanh, sigmoid and erf in the same
//! overflow-free forms), so both devices agree to rounding.

use serde::{Deserialize, Serialize};

/// An element-wise activation.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Activation {
    Relu,
    /// `z` for `z > 0`, else `alpha * z` (`alpha >= 0`).
    LeakyRelu {
        alpha: f32,
    },
    Tanh,
    Sigmoid,
    /// `z * Phi(z)`, the exact (erf) form.
    Gelu,
}

/// The WGSL's `ACT_*` codes (shaders/activation.wgsl).
pub(crate) const ACT_NONE: u32 = 0;
const ACT_RELU: u32 = 1;
const ACT_LEAKY_RELU: u32 = 2;
const ACT_TANH: u32 = 3;
const ACT_SIGMOID: u32 = 4;
const ACT_GELU: u32 = 5;

impl Activation {
    /// The WGSL code and parameter of this activation.
    pub(crate) fn code(self) -> (u32, f32) {
        match self {
            Activation::Relu => (ACT_RELU, 0.0),
            Activation::LeakyRelu { alpha } => (ACT_LEAKY_RELU, alpha),
            Activation::Tanh => (ACT_TANH, 0.0),
            Activation::Sigmoid => (ACT_SIGMOID, 0.0),
            Activation::Gelu => (ACT_GELU, 0.0),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::LeakyRelu { .. } => "leaky_relu",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::Gelu => "gelu",
        }
    }

    #[inline]
    pub fn apply(self, z: f32) -> f32 {
        match self {
            Activation::Relu => z.max(0.0),
            Activation::LeakyRelu { alpha } => {
                if z > 0.0 {
                    z
                } else {
                    alpha * z
                }
            }
            Activation::Tanh => tanh(z),
            Activation::Sigmoid => sigmoid(z),
            Activation::Gelu => 0.5 * z * (1.0 + erf(z * std::f32::consts::FRAC_1_SQRT_2)),
        }
    }

    /// Whether the slope at an input follows from the output alone (all but GELU), so the
    /// layer can work in place and its backward can be a mask applied by a neighbour.
    pub fn slope_from_output(self) -> bool {
        !matches!(self, Activation::Gelu)
    }

    /// Whether `f(max(a, b)) == max(f(a), f(b))` exactly, rounding included (the piecewise-linear
    /// kinds with a non-negative slope), so a max pool may run before the activation.
    pub fn commutes_with_max(self) -> bool {
        match self {
            Activation::Relu => true,
            Activation::LeakyRelu { alpha } => alpha >= 0.0,
            _ => false,
        }
    }

    /// Whether the activation commutes with an inverted dropout (a positive scale or a zero):
    /// then its slope also follows from the dropped-out output, and the two fuse in any order.
    pub fn commutes_with_dropout(self) -> bool {
        matches!(self, Activation::Relu | Activation::LeakyRelu { .. })
    }

    /// The slope at the input whose output is `y` (for [`Activation::slope_from_output`] kinds).
    #[inline]
    pub fn slope_at_output(self, y: f32) -> f32 {
        match self {
            Activation::Relu => {
                if y > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::LeakyRelu { alpha } => {
                if y > 0.0 {
                    1.0
                } else {
                    alpha
                }
            }
            Activation::Tanh => 1.0 - y * y,
            Activation::Sigmoid => y * (1.0 - y),
            Activation::Gelu => panic!("GELU's slope needs its input"),
        }
    }

    /// The slope at input `z`.
    #[inline]
    pub fn slope_at_input(self, z: f32) -> f32 {
        match self {
            Activation::Gelu => 0.5 * (1.0 + erf(z * std::f32::consts::FRAC_1_SQRT_2)) + z * (-0.5 * z * z).exp() * 0.398_942_3,
            other => other.slope_at_output(other.apply(z)),
        }
    }
}

/// `tanh` from one `exp` of a non-positive argument (no overflow).
#[inline]
fn tanh(z: f32) -> f32 {
    let t = (-2.0 * z.abs()).exp();
    let r = (1.0 - t) / (1.0 + t);
    if z < 0.0 { -r } else { r }
}

/// The logistic function from one `exp` of a non-positive argument.
#[inline]
fn sigmoid(z: f32) -> f32 {
    let e = (-z.abs()).exp();
    if z >= 0.0 { 1.0 / (1.0 + e) } else { e / (1.0 + e) }
}

/// Abramowitz and Stegun 7.1.26: |error| < 1.5e-7.
#[inline]
fn erf(v: f32) -> f32 {
    let x = v.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = ((((1.061_405_4 * t - 1.453_152_1) * t + 1.421_413_7) * t - 0.284_496_74) * t + 0.254_829_6) * t;
    let r = 1.0 - poly * (-x * x).exp();
    if v < 0.0 { -r } else { r }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_match_the_textbook_functions() {
        for z in [-30.0f32, -3.0, -0.5, -1e-3, 0.0, 1e-3, 0.7, 2.0, 30.0] {
            assert!((tanh(z) - z.tanh()).abs() < 1e-6, "tanh({z})");
            assert!((sigmoid(z) - 1.0 / (1.0 + (-z as f64).exp()) as f32).abs() < 1e-6, "sigmoid({z})");
            assert!((erf(z) as f64 - libm_erf(z as f64)).abs() < 5e-7, "erf({z}): {} vs {}", erf(z), libm_erf(z as f64));
        }
        assert_eq!(Activation::LeakyRelu { alpha: 0.1 }.apply(-2.0), -0.2);
        assert!((Activation::Gelu.apply(1.0) - 0.841_344_7).abs() < 1e-6);
    }

    #[test]
    fn slopes_match_central_differences() {
        let kinds = [Activation::Relu, Activation::LeakyRelu { alpha: 0.2 }, Activation::Tanh, Activation::Sigmoid, Activation::Gelu];
        for f in kinds {
            for z in [-2.5f32, -0.7, 0.3, 1.9] {
                let h = 1e-3;
                let numeric = (f.apply(z + h) - f.apply(z - h)) / (2.0 * h);
                assert!((numeric - f.slope_at_input(z)).abs() < 2e-3, "{f:?} at {z}: {numeric} vs {}", f.slope_at_input(z));
            }
        }
    }

    /// erf by its Taylor series (|z| <= 3) or its asymptotic complement, in f64.
    fn libm_erf(z: f64) -> f64 {
        if z.abs() > 3.0 {
            return z.signum() * (1.0 - (-z * z).exp() / (z.abs() * std::f64::consts::PI.sqrt()));
        }
        let (mut term, mut sum) = (z, z);
        for n in 1..200 {
            term *= -z * z / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }
}
