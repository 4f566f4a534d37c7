// Optimizer updates, one thread per parameter (same formulas as engine/src/cpu/optim.rs).

struct Update {
    len: u32,
    // 0: plain, 1: Nesterov (momentum); 0: L2 in the gradient, 1: decoupled (Adam).
    variant: u32,
    lr: f32,
    weight_decay: f32,
    // Momentum: mu in beta1. Adam: beta1, beta2, epsilon and the bias corrections 1 - beta^t.
    beta1: f32,
    beta2: f32,
    epsilon: f32,
    bias1: f32,
    bias2: f32,
}

@group(0) @binding(0) var<uniform> p: Update;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> state1: array<f32>;
@group(0) @binding(4) var<storage, read_write> state2: array<f32>;

fn thread_index(wid: vec3<u32>, groups: vec3<u32>, li: u32) -> u32 {
    return (wid.x + wid.y * groups.x) * 256u + li;
}

@compute @workgroup_size(256)
fn sgd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
       @builtin(local_invocation_index) li: u32) {
    let i = thread_index(wid, groups, li);
    if i < p.len {
        param[i] -= p.lr * (grad[i] + p.weight_decay * param[i]);
    }
}

@compute @workgroup_size(256)
fn momentum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
    let i = thread_index(wid, groups, li);
    if i < p.len {
        let g = grad[i] + p.weight_decay * param[i];
        let v = p.beta1 * state1[i] + g;
        state1[i] = v;
        param[i] -= p.lr * select(v, g + p.beta1 * v, p.variant == 1u);
    }
}

@compute @workgroup_size(256)
fn adam(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = thread_index(wid, groups, li);
    if i >= p.len {
        return;
    }
    let decoupled = p.variant == 1u;
    let step = p.lr / p.bias1;
    let inv_sqrt_bias2 = 1.0 / sqrt(p.bias2);
    let g = grad[i] + select(p.weight_decay, 0.0, decoupled) * param[i];
    var w = param[i] * select(1.0, 1.0 - p.lr * p.weight_decay, decoupled);
    let m = p.beta1 * state1[i] + (1.0 - p.beta1) * g;
    let v = p.beta2 * state2[i] + (1.0 - p.beta2) * g * g;
    state1[i] = m;
    state2[i] = v;
    param[i] = w - step * m / (sqrt(v) * inv_sqrt_bias2 + p.epsilon);
}
