// Softmax and cross-entropy over rows of logits: the fused loss (forward, backward and the
// reduction into [loss sum, correct count] in one dispatch), with optional label smoothing;
// inference probabilities and classes.

struct Rows {
    n: u32,
    classes: u32,
    // Where the step's [loss sum, correct count] go in `stats` (in pairs).
    stats_slot: u32,
    // e: the target is (1 - e) * onehot(label) + e / classes.
    label_smoothing: f32,
}

@group(0) @binding(0) var<uniform> p: Rows;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
@group(0) @binding(5) var<storage, read_write> outputs: array<f32>;

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

// Sum of the row's logits.
fn logit_sum(base: u32) -> f32 {
    var sum = 0.0;
    for (var j = 0u; j < p.classes; j++) {
        sum += logits[base + j];
    }
    return sum;
}

// Sum of exp(logit - max) over the row.
fn exp_sum(base: u32, max_logit: f32) -> f32 {
    var sum = 0.0;
    for (var j = 0u; j < p.classes; j++) {
        sum += exp(logits[base + j] - max_logit);
    }
    return sum;
}

var<workgroup> partial: array<vec2<f32>, 256>;

// One workgroup: each thread takes rows li, li + 256, ...: their loss, hit and gradient; then
// a tree over the threads' sums, in a fixed order (deterministic). The step's [loss sum,
// correct count] go to its slot of `stats`, read back only when the trainer reports.
@compute @workgroup_size(256)
fn xent(@builtin(local_invocation_index) li: u32) {
    let inv_n = 1.0 / f32(p.n);
    // The smoothed target's value off and on the label.
    let off = p.label_smoothing / f32(p.classes);
    let on = 1.0 - p.label_smoothing + off;
    var acc = vec2<f32>(0.0, 0.0);
    for (var r = li; r < p.n; r += 256u) {
        let base = r * p.classes;
        let m = row_max(base);
        let sum = exp_sum(base, m.x);
        let label = labels[r];
        var target_dot = logits[base + label];
        if off != 0.0 {
            target_dot = (1.0 - p.label_smoothing) * target_dot + off * logit_sum(base);
        }
        acc += vec2<f32>(m.x + log(sum) - target_dot, select(0.0, 1.0, u32(m.y) == label));
        for (var j = 0u; j < p.classes; j++) {
            let prob = exp(logits[base + j] - m.x) / sum;
            dlogits[base + j] = (prob - select(off, on, j == label)) * inv_n;
        }
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
        stats[2u * p.stats_slot] = partial[0].x;
        stats[2u * p.stats_slot + 1u] = partial[0].y;
    }
}

// Inference outputs, one thread per row: the probabilities at [row * classes + j], then the
// classes (as floats) after all n rows, so one readback brings both.
@compute @workgroup_size(64)
fn predict(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let r = row_index(wid, groups, li);
    if r >= p.n {
        return;
    }
    let base = r * p.classes;
    let m = row_max(base);
    let sum = exp_sum(base, m.x);
    for (var j = 0u; j < p.classes; j++) {
        outputs[base + j] = exp(logits[base + j] - m.x) / sum;
    }
    outputs[p.n * p.classes + r] = m.y;
}
