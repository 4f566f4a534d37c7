// Pooling (NHWC, no padding): max and average. The max forward records, per output, the index
// of the winning input within its image (the first maximum wins ties); the backwards gather,
// per input, the gradients of the outputs whose windows hold it, in output order, so results
// match the CPU bit for bit. A global average pool is an average pool whose window is the
// whole image. The backwards take the gradient masks of the layers between the pool and what
// feeds it (an activation's slope at x; a dropout), as the epilogue of gemm_tile.wgsl does.

struct Pool {
    count: u32, // outputs (forward) or inputs (backward) to compute, n images' worth
    in_h: u32,
    in_w: u32,
    channels: u32,
    out_h: u32,
    out_w: u32,
    size_h: u32,
    size_w: u32,
    stride_h: u32,
    stride_w: u32,
    // Backward epilogue: an activation's slope at x (ACT_* of activation.wgsl, its alpha); a
    // dropout mask (0 or 1; hash, threshold, scale).
    act: u32,
    act_alpha: f32,
    dropout: u32,
    drop_base: u32,
    drop_threshold: u32,
    drop_scale: f32,
}

@group(0) @binding(0) var<uniform> p: Pool;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> argmax: array<u32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read> argmax_in: array<u32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;

fn thread_index(wid: vec3<u32>, groups: vec3<u32>, li: u32) -> u32 {
    return (wid.x + wid.y * groups.x) * 256u + li;
}

// An output's window: its image's first input, and its own first input within that image.
struct Window {
    image_base: u32,
    first: u32,
    ch: u32,
}

fn window(o: u32) -> Window {
    let out_len = p.out_h * p.out_w * p.channels;
    let img = o / out_len;
    let r = o % out_len;
    let ch = r % p.channels;
    let pos = r / p.channels;
    let oy = pos / p.out_w;
    let ox = pos % p.out_w;
    return Window(img * p.in_h * p.in_w * p.channels, ((oy * p.stride_h) * p.in_w + ox * p.stride_w) * p.channels + ch, ch);
}

@compute @workgroup_size(256)
fn max_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let o = thread_index(wid, groups, li);
    if o >= p.count {
        return;
    }
    let w = window(o);
    var best_at = w.first;
    var best = x[w.image_base + best_at];
    for (var ky = 0u; ky < p.size_h; ky++) {
        for (var kx = 0u; kx < p.size_w; kx++) {
            let at = w.first + (ky * p.in_w + kx) * p.channels;
            let v = x[w.image_base + at];
            if v > best {
                best = v;
                best_at = at;
            }
        }
    }
    y[o] = best;
    argmax[o] = best_at;
}

@compute @workgroup_size(256)
fn avg_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let o = thread_index(wid, groups, li);
    if o >= p.count {
        return;
    }
    let w = window(o);
    var sum = 0.0;
    for (var ky = 0u; ky < p.size_h; ky++) {
        for (var kx = 0u; kx < p.size_w; kx++) {
            sum += x[w.image_base + w.first + (ky * p.in_w + kx) * p.channels];
        }
    }
    y[o] = sum / f32(p.size_h * p.size_w);
}

// The outputs whose windows hold input i: windows oy with oy * stride <= iy < oy * stride + size.
struct Covering {
    out_base: u32,
    at: u32,
    ch: u32,
    oy_first: u32,
    oy_last: u32,
    ox_first: u32,
    ox_last: u32,
}

fn covering(i: u32) -> Covering {
    let in_len = p.in_h * p.in_w * p.channels;
    let img = i / in_len;
    let at = i % in_len;
    let ch = at % p.channels;
    let pix = at / p.channels;
    let iy = pix / p.in_w;
    let ix = pix % p.in_w;
    let oy_first = select(0u, (iy + 1u - p.size_h + p.stride_h - 1u) / p.stride_h, iy + 1u > p.size_h);
    let ox_first = select(0u, (ix + 1u - p.size_w + p.stride_w - 1u) / p.stride_w, ix + 1u > p.size_w);
    let oy_last = min(iy / p.stride_h, p.out_h - 1u);
    let ox_last = min(ix / p.stride_w, p.out_w - 1u);
    return Covering(img * p.out_h * p.out_w * p.channels, at, ch, oy_first, oy_last, ox_first, ox_last);
}

// The input gradient, finished by the masks of the layers before the pool.
fn store_dx(i: u32, sum: f32) {
    var v = sum;
    if p.act != ACT_NONE {
        v *= slope_at_output(p.act, p.act_alpha, x[i]);
    }
    if p.dropout != 0u {
        v = select(0.0, v * p.drop_scale, dropout_keeps(p.drop_base, p.drop_threshold, i));
    }
    dx[i] = v;
}

@compute @workgroup_size(256)
fn max_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    let i = thread_index(wid, groups, li);
    if i >= p.count {
        return;
    }
    let c = covering(i);
    var sum = 0.0;
    for (var oy = c.oy_first; oy <= c.oy_last; oy++) {
        for (var ox = c.ox_first; ox <= c.ox_last; ox++) {
            let o = c.out_base + (oy * p.out_w + ox) * p.channels + c.ch;
            if argmax_in[o] == c.at {
                sum += dy[o];
            }
        }
    }
    store_dx(i, sum);
}

@compute @workgroup_size(256)
fn avg_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    let i = thread_index(wid, groups, li);
    if i >= p.count {
        return;
    }
    let c = covering(i);
    var sum = 0.0;
    for (var oy = c.oy_first; oy <= c.oy_last; oy++) {
        for (var ox = c.ox_first; ox <= c.ox_last; ox++) {
            sum += dy[c.out_base + (oy * p.out_w + ox) * p.channels + c.ch];
        }
    }
    store_dx(i, sum / f32(p.size_h * p.size_w));
}
