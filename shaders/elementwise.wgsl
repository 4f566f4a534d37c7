// Element-wise ops: activations (forward in place or into another buffer; backward as the slope
// at the output, in place on the gradient, or at the input), inverted dropout and u8 -> f32
// input normalisation, for the layers no neighbour absorbs (the epilogues of gemm_tile.wgsl,
// pool.wgsl and batchnorm.wgsl take most). One thread per element (per 4 pixels for
// normalisation).

struct Elementwise {
    len: u32,
    // Dropout: the mask's per-key hash (see rng.rs) and the drop threshold out of 2^32.
    mask_base: u32,
    threshold: u32,
    scale: f32,
    // ACT_* of activation.wgsl, and its alpha.
    act: u32,
    act_alpha: f32,
}

@group(0) @binding(0) var<uniform> p: Elementwise;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read> pixels: array<u32>;
@group(0) @binding(4) var<storage, read> grad: array<f32>;

fn thread_index(wid: vec3<u32>, groups: vec3<u32>, li: u32) -> u32 {
    return (wid.x + wid.y * groups.x) * 256u + li;
}

@compute @workgroup_size(256)
fn activation_in_place(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                       @builtin(local_invocation_index) li: u32) {
    let i = thread_index(wid, groups, li);
    if i < p.len {
        x[i] = activate(p.act, p.act_alpha, x[i]);
    }
}

// x = f(y).
@compute @workgroup_size(256)
fn activation_into(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                   @builtin(local_invocation_index) li: u32) {
    let i = thread_index(wid, groups, li);
    if i < p.len {
        x[i] = activate(p.act, p.act_alpha, y[i]);
    }
}

// dy (in x) *= f'(at the output y).
@compute @workgroup_size(256)
fn slope_at_output_in_place(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                            @builtin(local_invocation_index) li: u32) {
    let i = thread_index(wid, groups, li);
    if i < p.len {
        x[i] *= slope_at_output(p.act, p.act_alpha, y[i]);
    }
}

// dx (in x) = dy (grad) * f'(at the input y).
@compute @workgroup_size(256)
fn slope_at_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                  @builtin(local_invocation_index) li: u32) {
    let i = thread_index(wid, groups, li);
    if i < p.len {
        let z = y[i];
        var slope = gelu_slope(z);
        if p.act != ACT_GELU {
            slope = slope_at_output(p.act, p.act_alpha, activate(p.act, p.act_alpha, z));
        }
        x[i] = grad[i] * slope;
    }
}

// Applied to activations in the forward and to their gradient in the backward, with one key.
@compute @workgroup_size(256)
fn dropout(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let i = thread_index(wid, groups, li);
    if i < p.len {
        x[i] = select(0.0, x[i] * p.scale, dropout_keeps(p.mask_base, p.threshold, i));
    }
}

// Four pixels per thread, packed little-endian in one word.
@compute @workgroup_size(256)
fn normalize_u8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    let w = thread_index(wid, groups, li);
    let first = w * 4u;
    if first >= p.len {
        return;
    }
    let word = pixels[w];
    for (var j = 0u; j < 4u; j++) {
        if first + j < p.len {
            x[first + j] = f32((word >> (8u * j)) & 0xffu) * (1.0 / 255.0);
        }
    }
}
