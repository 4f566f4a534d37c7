// Softmax and cross-entropy over rows of logits: the fused loss (forward and backward in one
// pass: per-row loss and hit, and the logits' gradient), then a fixed-order reduction of the
// per-row values into [loss sum, correct count]; inference softmax and argmax.

struct Rows {
    n: u32,
    classes: u32,
}

@group(0) @binding(0) var<uniform> p: Rows;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> dlogits: array<f32>;
// Per row: loss, then 1.0 if the argmax is the label.
@group(0) @binding(4) var<storage, read_write> row_stats: array<f32>;
@group(0) @binding(5) var<storage, read> row_stats_in: array<f32>;
@group(0) @binding(6) var<storage, read_write> stats: array<f32>;
@group(0) @binding(7) var<storage, read_write> probs: array<f32>;
@group(0) @binding(8) var<storage, read_write> classes: array<u32>;

fn row_index(wid: vec3<u32>, groups: vec3<u32>, li: u32) -> u32 {
    return (wid.x + wid.y * groups.x) * 64u + li;
}

// The row's maximum and its first index.
fn row_max(base: u32) -> vec2<f32> {
    var best = logits[base];
    var arg = 0u;
    for (var j = 1u; j < p.classes; j++) {
        let v = logits[base + j];
        if v > best {
            best = v;
            arg = j;
        }
    }
    return vec2<f32>(best, f32(arg));
}

// Sum of exp(logit - max) over the row.
fn exp_sum(base: u32, max_logit: f32) -> f32 {
    var sum = 0.0;
    for (var j = 0u; j < p.classes; j++) {
        sum += exp(logits[base + j] - max_logit);
    }
    return sum;
}

@compute @workgroup_size(64)
fn xent_forward_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                         @builtin(local_invocation_index) li: u32) {
    let r = row_index(wid, groups, li);
    if r >= p.n {
        return;
    }
    let base = r * p.classes;
    let m = row_max(base);
    let sum = exp_sum(base, m.x);
    let label = labels[r];
    row_stats[2u * r] = m.x + log(sum) - logits[base + label];
    row_stats[2u * r + 1u] = select(0.0, 1.0, u32(m.y) == label);
    let inv_n = 1.0 / f32(p.n);
    for (var j = 0u; j < p.classes; j++) {
        let prob = exp(logits[base + j] - m.x) / sum;
        dlogits[base + j] = (prob - select(0.0, 1.0, j == label)) * inv_n;
    }
}

var<workgroup> partial: array<vec2<f32>, 256>;

// One workgroup: strided sums, then a tree; the order is fixed, so the result is deterministic.
@compute @workgroup_size(256)
fn xent_reduce(@builtin(local_invocation_index) li: u32) {
    var acc = vec2<f32>(0.0, 0.0);
    for (var r = li; r < p.n; r += 256u) {
        acc += vec2<f32>(row_stats_in[2u * r], row_stats_in[2u * r + 1u]);
    }
    partial[li] = acc;
    workgroupBarrier();
    for (var width = 128u; width > 0u; width >>= 1u) {
        if li < width {
            partial[li] += partial[li + width];
        }
        workgroupBarrier();
    }
    if li == 0u {
        stats[0] = partial[0].x;
        stats[1] = partial[0].y;
    }
}

@compute @workgroup_size(64)
fn softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let r = row_index(wid, groups, li);
    if r >= p.n {
        return;
    }
    let base = r * p.classes;
    let m = row_max(base);
    let sum = exp_sum(base, m.x);
    for (var j = 0u; j < p.classes; j++) {
        probs[base + j] = exp(logits[base + j] - m.x) / sum;
    }
}

@compute @workgroup_size(64)
fn argmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
    let r = row_index(wid, groups, li);
    if r < p.n {
        classes[r] = u32(row_max(r * p.classes).y);
    }
}
