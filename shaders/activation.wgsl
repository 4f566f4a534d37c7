// Activation functions, prepended to the shaders whose kernels apply one (the tiled product's
// epilogue, pooling's gradient masks, batch normalisation, the element-wise kernels). The
// formulas are engine/src/activation.rs's: tanh, sigmoid and erf from one exp of a
// non-positive argument, so nothing overflows.

const ACT_NONE: u32 = 0u;
const ACT_RELU: u32 = 1u;
const ACT_LEAKY_RELU: u32 = 2u;
const ACT_TANH: u32 = 3u;
const ACT_SIGMOID: u32 = 4u;
const ACT_GELU: u32 = 5u;

fn stable_tanh(z: f32) -> f32 {
    let t = exp(-2.0 * abs(z));
    let r = (1.0 - t) / (1.0 + t);
    return select(r, -r, z < 0.0);
}

fn stable_sigmoid(z: f32) -> f32 {
    let e = exp(-abs(z));
    return select(e / (1.0 + e), 1.0 / (1.0 + e), z >= 0.0);
}

// Abramowitz and Stegun 7.1.26.
fn erf_approx(v: f32) -> f32 {
    let x = abs(v);
    let t = 1.0 / (1.0 + 0.3275911 * x);
    let poly = ((((1.0614054 * t - 1.4531521) * t + 1.4214137) * t - 0.28449674) * t + 0.2548296) * t;
    let r = 1.0 - poly * exp(-x * x);
    return select(r, -r, v < 0.0);
}

fn activate(kind: u32, alpha: f32, z: f32) -> f32 {
    switch kind {
        case ACT_RELU: { return max(z, 0.0); }
        case ACT_LEAKY_RELU: { return select(alpha * z, z, z > 0.0); }
        case ACT_TANH: { return stable_tanh(z); }
        case ACT_SIGMOID: { return stable_sigmoid(z); }
        case ACT_GELU: { return 0.5 * z * (1.0 + erf_approx(z * 0.70710678)); }
        default: { return z; }
    }
}

// The slope at the input whose output is y (every kind but GELU).
fn slope_at_output(kind: u32, alpha: f32, y: f32) -> f32 {
    switch kind {
        case ACT_RELU: { return select(0.0, 1.0, y > 0.0); }
        case ACT_LEAKY_RELU: { return select(alpha, 1.0, y > 0.0); }
        case ACT_TANH: { return 1.0 - y * y; }
        case ACT_SIGMOID: { return y * (1.0 - y); }
        default: { return 1.0; }
    }
}

fn gelu_slope(z: f32) -> f32 {
    return 0.5 * (1.0 + erf_approx(z * 0.70710678)) + z * exp(-0.5 * z * z) * 0.3989423;
}
