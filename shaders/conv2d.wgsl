// 2-D convolution (NHWC activations, weights [kh, kw, c_in, c_out]) as implicit matrix
// products on the tiled product of gemm_tile.wgsl. Operands are gathered from the tensors on
// the fly; nothing is unfolded into memory.
//   forward          y[(img, oy, ox), oc]  = sum over (ky, kx, ic) of x[img, oy*s+ky-pad, ox*s+kx-pad, ic] * W[ky, kx, ic, oc] + b[oc]
//   backward input   dx[(img, iy, ix), ic] = sum over (ky, kx, oc) of dy[img, oy, ox, oc] * W[ky, kx, ic, oc]
//                    where iy = oy*s + ky - pad (only taps that land on the stride grid count)
//   backward weight  dW[(ky, kx, ic), oc]  = sum over (img, oy, ox) of x[...] * dy[img, oy, ox, oc];
//                    a ones row appended to A makes the last row of C the bias gradient.

const FORWARD: u32 = 1u;
const BACKWARD_INPUT: u32 = 2u;
const BACKWARD_WEIGHT: u32 = 3u;

// Per reduction index k, 8 words written by engine/src/gpu/conv2d.rs: forward, k = (ky, kx, ic)
// -> [ky, kx, ic]; backward input, k = (ky, kx, oc) -> [ky / stride_h, ky % stride_h,
// kx / stride_w, kx % stride_w, oc, ky * kernel_w + kx]. Backward weight reads none.
@group(0) @binding(7) var<storage, read> taps: array<u32>;

// What a row of A needs, decomposed once. Forward, row (img, oy, ox): the image's base in x and
// the window's top-left (oy * stride - pad, ox * stride - pad). Backward input, row
// (img, iy, ix): the image's base in dy, and (iy + pad) and (ix + pad) as quotient (y, x) and
// remainder (ry, rx) by the stride. Backward weight, row (ky, kx, ic): ic in `base`, and
// (ky - pad, kx - pad).
struct ARow {
    base: u32,
    y: i32,
    x: i32,
    ry: u32,
    rx: u32,
}

// Backward weight: the output position (img, oy, ox) of the thread's reduction index.
struct KState {
    img: u32,
    oy: u32,
    ox: u32,
}

fn a_row(mode: u32, m: u32) -> ARow {
    switch mode {
        case FORWARD: {
            let positions = p.out_h * p.out_w;
            let pos = m % positions;
            let oy = pos / p.out_w;
            let ox = pos % p.out_w;
            let base = (m / positions) * p.in_h * p.in_w * p.in_c;
            return ARow(base, i32(oy * p.stride_h) - i32(p.pad_top), i32(ox * p.stride_w) - i32(p.pad_left), 0u, 0u);
        }
        case BACKWARD_INPUT: {
            let pixels = p.in_h * p.in_w;
            let pix = m % pixels;
            let ty = pix / p.in_w + p.pad_top;
            let tx = pix % p.in_w + p.pad_left;
            let base = (m / pixels) * p.out_h * p.out_w * p.out_c;
            return ARow(base, i32(ty / p.stride_h), i32(tx / p.stride_w), ty % p.stride_h, tx % p.stride_w);
        }
        default: {
            let tap = m / p.in_c;
            return ARow(m % p.in_c, i32(tap / p.kernel_w) - i32(p.pad_top), i32(tap % p.kernel_w) - i32(p.pad_left), 0u, 0u);
        }
    }
}

fn k_start(mode: u32, k: u32) -> KState {
    if mode != BACKWARD_WEIGHT {
        return KState(0u, 0u, 0u);
    }
    let positions = p.out_h * p.out_w;
    let pos = k % positions;
    return KState(k / positions, pos / p.out_w, pos % p.out_w);
}

// The position TILE_K reduction indices further on, by subtraction.
fn k_advance(mode: u32, ks: KState) -> KState {
    if mode != BACKWARD_WEIGHT {
        return ks;
    }
    var s = ks;
    s.ox += TILE_K;
    loop {
        if s.ox < p.out_w {
            break;
        }
        s.ox -= p.out_w;
        s.oy += 1u;
        if s.oy == p.out_h {
            s.oy = 0u;
            s.img += 1u;
        }
    }
    return s;
}

fn input_at(base: u32, iy: i32, ix: i32, ic: u32) -> f32 {
    if iy < 0 || ix < 0 || iy >= i32(p.in_h) || ix >= i32(p.in_w) {
        return 0.0;
    }
    return a[base + (u32(iy) * p.in_w + u32(ix)) * p.in_c + ic];
}

fn load_a(mode: u32, row: ARow, k: u32, ks: KState) -> f32 {
    switch mode {
        // x under tap k = (ky, kx, ic) of output position row.
        case FORWARD: {
            let e = k * 8u;
            return input_at(row.base, row.y + i32(taps[e]), row.x + i32(taps[e + 1u]), taps[e + 2u]);
        }
        // The output gradient input pixel row receives through tap k = (ky, kx, oc): only taps
        // on the stride grid count, at oy = (iy + pad - ky) / stride.
        case BACKWARD_INPUT: {
            let e = k * 8u;
            if row.ry != taps[e + 1u] || row.rx != taps[e + 3u] {
                return 0.0;
            }
            let oy = row.y - i32(taps[e]);
            let ox = row.x - i32(taps[e + 2u]);
            if oy < 0 || ox < 0 || oy >= i32(p.out_h) || ox >= i32(p.out_w) {
                return 0.0;
            }
            return a[row.base + (u32(oy) * p.out_w + u32(ox)) * p.out_c + taps[e + 4u]];
        }
        // x under tap row = (ky, kx, ic) of output position k.
        default: {
            let base = ks.img * p.in_h * p.in_w * p.in_c;
            return input_at(base, i32(ks.oy * p.stride_h) + row.y, i32(ks.ox * p.stride_w) + row.x, row.base);
        }
    }
}

fn load_b(mode: u32, k: u32, col: u32) -> f32 {
    switch mode {
        // W[ky, kx, ic, oc] with k = (ky, kx, oc), col = ic.
        case BACKWARD_INPUT: {
            let e = k * 8u;
            return b[(taps[e + 5u] * p.in_c + col) * p.out_c + taps[e + 4u]];
        }
        // W (forward) or dy (backward weight), both [k, n] row-major.
        default: { return b[k * p.n + col]; }
    }
}

@compute @workgroup_size(16, 16)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>) {
    gemm_tiles(FORWARD, wid, groups, lid);
}

@compute @workgroup_size(16, 16)
fn backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                  @builtin(local_invocation_id) lid: vec3<u32>) {
    gemm_tiles(BACKWARD_INPUT, wid, groups, lid);
}

@compute @workgroup_size(16, 16)
fn backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                   @builtin(local_invocation_id) lid: vec3<u32>) {
    gemm_tiles(BACKWARD_WEIGHT, wid, groups, lid);
}
