// Max pooling (NHWC, no padding). The forward records, per output, the index of the winning
// input within its image (the first maximum wins ties); the backward gathers, per input, the
// gradients of the outputs it won, in output order, so results match the CPU bit for bit. The
// backward takes the gradient masks of the layers between the pool and what feeds it (a ReLU:
// x > 0; a dropout), as the epilogue of gemm_tile.wgsl does.

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
    // Backward epilogue: mask by x > 0 (0 or 1); a dropout mask (0 or 1; hash, threshold, scale).
    relu_mask: u32,
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

@compute @workgroup_size(256)
fn max_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let o = thread_index(wid, groups, li);
    if o >= p.count {
        return;
    }
    let out_len = p.out_h * p.out_w * p.channels;
    let img = o / out_len;
    let r = o % out_len;
    let ch = r % p.channels;
    let pos = r / p.channels;
    let oy = pos / p.out_w;
    let ox = pos % p.out_w;
    let image_base = img * p.in_h * p.in_w * p.channels;
    var best_at = ((oy * p.stride_h) * p.in_w + ox * p.stride_w) * p.channels + ch;
    var best = x[image_base + best_at];
    for (var ky = 0u; ky < p.size_h; ky++) {
        for (var kx = 0u; kx < p.size_w; kx++) {
            let at = ((oy * p.stride_h + ky) * p.in_w + ox * p.stride_w + kx) * p.channels + ch;
            let v = x[image_base + at];
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
fn max_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    let i = thread_index(wid, groups, li);
    if i >= p.count {
        return;
    }
    let in_len = p.in_h * p.in_w * p.channels;
    let img = i / in_len;
    let at = i % in_len;
    let ch = at % p.channels;
    let pix = at / p.channels;
    let iy = pix / p.in_w;
    let ix = pix % p.in_w;
    // Windows oy with oy * stride <= iy < oy * stride + size.
    let oy_first = select(0u, (iy + 1u - p.size_h + p.stride_h - 1u) / p.stride_h, iy + 1u > p.size_h);
    let ox_first = select(0u, (ix + 1u - p.size_w + p.stride_w - 1u) / p.stride_w, ix + 1u > p.size_w);
    let oy_last = min(iy / p.stride_h, p.out_h - 1u);
    let ox_last = min(ix / p.stride_w, p.out_w - 1u);
    let out_base = img * p.out_h * p.out_w * p.channels;
    var sum = 0.0;
    for (var oy = oy_first; oy <= oy_last; oy++) {
        for (var ox = ox_first; ox <= ox_last; ox++) {
            let o = out_base + (oy * p.out_w + ox) * p.channels + ch;
            if argmax_in[o] == at {
                sum += dy[o];
            }
        }
    }
    if p.relu_mask != 0u && !(x[i] > 0.0) {
        sum = 0.0;
    }
    if p.dropout != 0u {
        sum = select(0.0, sum * p.drop_scale, dropout_keeps(p.drop_base, p.drop_threshold, i));
    }
    dx[i] = sum;
}
