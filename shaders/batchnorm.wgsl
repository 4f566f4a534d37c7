// Batch normalisation over a [rows, channels] activation (NHWC images: rows = n * h * w;
// flat features: rows = n), per channel:
//   training   y = gamma * (x - mean_B) / sqrt(var_B + eps) + beta, with the batch's mean and
//              (biased) variance, which also move the running averages:
//              running = momentum * running + (1 - momentum) * batch
//   inference  the same with the running averages
//   backward   dbeta = sum dy, dgamma = sum dy * xhat,
//              dx = gamma / sqrt(var_B + eps) * (dy - dbeta / rows - xhat * dgamma / rows)
// The forward ends with the epilogue of the element-wise layers after it (an activation, a
// dropout), the backward's dx with the gradient masks of those before it. Reductions are fixed
// in order (each workgroup sums 16 channels over 16 row lanes, then the lanes in a tree), so
// results are deterministic.

struct Norm {
    rows: u32,
    channels: u32,
    momentum: f32,
    epsilon: f32,
    // Forward: normalise with the batch's statistics (1) or the running averages (0).
    training: u32,
    // Forward epilogue / backward mask: ACT_* of activation.wgsl and its alpha (the backward
    // multiplies by the slope at `act_in`); a dropout mask (0 or 1; hash, threshold, scale).
    act: u32,
    act_alpha: f32,
    dropout: u32,
    drop_base: u32,
    drop_threshold: u32,
    drop_scale: f32,
}

@group(0) @binding(0) var<uniform> p: Norm;
@group(0) @binding(1) var<storage, read> x: array<f32>;
// The output: y (forward) or dx (backward).
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read> beta: array<f32>;
@group(0) @binding(5) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(6) var<storage, read_write> running_var: array<f32>;
// The batch's mean per channel, then 1 / sqrt(var + eps) per channel.
@group(0) @binding(7) var<storage, read_write> saved: array<f32>;
@group(0) @binding(8) var<storage, read> dy: array<f32>;
@group(0) @binding(9) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(10) var<storage, read_write> dbeta: array<f32>;
@group(0) @binding(11) var<storage, read> act_in: array<f32>;

const LANES: u32 = 16u;
var<workgroup> partial_a: array<f32, 256>;
var<workgroup> partial_b: array<f32, 256>;

fn thread_index(wid: vec3<u32>, groups: vec3<u32>, li: u32) -> u32 {
    return (wid.x + wid.y * groups.x) * 256u + li;
}

// Sums the 16 row lanes of each channel lane in a fixed tree; lane 0 ends with the total.
fn reduce_lanes(li: u32) {
    let row_lane = li / LANES;
    for (var half = LANES >> 1u; half > 0u; half >>= 1u) {
        workgroupBarrier();
        if row_lane < half {
            partial_a[li] += partial_a[li + half * LANES];
            partial_b[li] += partial_b[li + half * LANES];
        }
    }
    workgroupBarrier();
}

@compute @workgroup_size(256)
fn statistics(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let c = (wid.x + wid.y * groups.x) * LANES + li % LANES;
    let row_lane = li / LANES;
    let live = c < p.channels;
    var sum = 0.0;
    if live {
        for (var r = row_lane; r < p.rows; r += LANES) {
            sum += x[r * p.channels + c];
        }
    }
    partial_a[li] = sum;
    partial_b[li] = 0.0;
    reduce_lanes(li);
    let mean = partial_a[li % LANES] / f32(p.rows);
    workgroupBarrier();
    var squares = 0.0;
    if live {
        for (var r = row_lane; r < p.rows; r += LANES) {
            let d = x[r * p.channels + c] - mean;
            squares += d * d;
        }
    }
    partial_a[li] = squares;
    reduce_lanes(li);
    if live && row_lane == 0u {
        let variance = partial_a[li] / f32(p.rows);
        saved[c] = mean;
        saved[p.channels + c] = 1.0 / sqrt(variance + p.epsilon);
        running_mean[c] = p.momentum * running_mean[c] + (1.0 - p.momentum) * mean;
        running_var[c] = p.momentum * running_var[c] + (1.0 - p.momentum) * variance;
    }
}

@compute @workgroup_size(256)
fn normalize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
    let i = thread_index(wid, groups, li);
    if i >= p.rows * p.channels {
        return;
    }
    let c = i % p.channels;
    var mean = running_mean[c];
    var inv_std = 1.0 / sqrt(running_var[c] + p.epsilon);
    if p.training != 0u {
        mean = saved[c];
        inv_std = saved[p.channels + c];
    }
    var v = (x[i] - mean) * inv_std * gamma[c] + beta[c];
    if p.act != ACT_NONE {
        v = activate(p.act, p.act_alpha, v);
    }
    if p.dropout != 0u {
        v = select(0.0, v * p.drop_scale, dropout_keeps(p.drop_base, p.drop_threshold, i));
    }
    out[i] = v;
}

@compute @workgroup_size(256)
fn backward_params(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                   @builtin(local_invocation_index) li: u32) {
    let c = (wid.x + wid.y * groups.x) * LANES + li % LANES;
    let row_lane = li / LANES;
    let live = c < p.channels;
    var g = 0.0;
    var b = 0.0;
    if live {
        let mean = saved[c];
        let inv_std = saved[p.channels + c];
        for (var r = row_lane; r < p.rows; r += LANES) {
            let at = r * p.channels + c;
            g += dy[at] * ((x[at] - mean) * inv_std);
            b += dy[at];
        }
    }
    partial_a[li] = g;
    partial_b[li] = b;
    reduce_lanes(li);
    if live && row_lane == 0u {
        dgamma[c] = partial_a[li];
        dbeta[c] = partial_b[li];
    }
}

@compute @workgroup_size(256)
fn backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                  @builtin(local_invocation_index) li: u32) {
    let i = thread_index(wid, groups, li);
    if i >= p.rows * p.channels {
        return;
    }
    let c = i % p.channels;
    let inv_std = saved[p.channels + c];
    let xhat = (x[i] - saved[c]) * inv_std;
    let rows = f32(p.rows);
    var v = gamma[c] * inv_std * (dy[i] - dbeta[c] / rows - xhat * dgamma[c] / rows);
    if p.act != ACT_NONE {
        v *= slope_at_output(p.act, p.act_alpha, act_in[i]);
    }
    if p.dropout != 0u {
        v = select(0.0, v * p.drop_scale, dropout_keeps(p.drop_base, p.drop_threshold, i));
    }
    out[i] = v;
}
