// The dropout mask, shared by the kernels that apply it (prepended to their files).

// PCG RXS-M-XS, as `pcg_hash` in engine/src/rng.rs.
fn pcg_hash(input: u32) -> u32 {
    let state = input * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// Whether element `i` survives a dropout mask with per-key hash `base` and threshold out of 2^32.
fn dropout_keeps(base: u32, threshold: u32, i: u32) -> bool {
    return pcg_hash(base ^ pcg_hash(i)) >= threshold;
}
