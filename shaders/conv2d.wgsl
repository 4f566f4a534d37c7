// 2-D convolution (NHWC activations, weights [kh, kw, c_in, c_out]) as implicit matrix
// products on the tiled product of gemm_tile.wgsl. Operands are gathered from the tensors on
// the fly; nothing is unfolded into memory.
//   forward          y[(img, oy, ox), oc]  = sum over (ky, kx, ic) of x[img, oy*s+ky-pad, ox*s+kx-pad, ic] * W[ky, kx, ic, oc] + b[oc]
//   backward input   dx[(img, iy, ix), ic] = sum over (ky, kx, oc) of dy[img, oy, ox, oc] * W[ky, kx, ic, oc]
//                    where iy = oy*s + ky - pad (only taps that land on the stride grid count)
//   backward weight  dW[(ky, kx, ic), oc]  = sum over (img, oy, ox) of x[...] * dy[img, oy, ox, oc];
//                    a ones row appended to A makes the last row of C the bias gradient.
// Forward and backward input read A along k, backward weight along m; with four channels to a
// group (c_in or c_out a multiple of 4) a group is one pixel's channels, read as one vec4.
// The forward's and backward weight's input may be u8 pixels (`input_u8`): the network's
// first convolution reads the uploaded bytes and scales them itself.

const FORWARD: u32 = 1u;
const BACKWARD_INPUT: u32 = 2u;
const BACKWARD_WEIGHT: u32 = 3u;

// The input (forward, backward weight) or the output gradient (backward input), as raw words:
// f32 values, or u8 pixels four to a word.
@group(0) @binding(1) var<storage, read> a: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
// Two vec4s per index, written by engine/src/gpu/conv2d.rs. Forward and backward weight: per
// (ky, kx, ic) (a reduction index of the forward, a row of A of the backward weight),
// [ky, kx, ic, 0]. Backward input: per reduction index (ky, kx, oc), [ky / stride_h,
// ky % stride_h, kx / stride_w, kx % stride_w], [oc, ky * kernel_w + kx, 0, 0].
@group(0) @binding(7) var<storage, read> taps: array<vec4<u32>>;

// What a row of A needs, decomposed once. Forward, row (img, oy, ox): the image's base in x and
// the window's top-left (oy * stride - pad, ox * stride - pad). Backward input, row
// (img, iy, ix): the image's base in dy, and (iy + pad) and (ix + pad) as quotient (y, x) and
// remainder (ry, rx) by the stride. Backward weight reads its rows from the tap table.
struct ARow {
    base: u32,
    y: i32,
    x: i32,
    ry: u32,
    rx: u32,
}

// Backward weight: the output position (img, oy, ox) of a group's reduction index.
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
            return ARow(0u, 0, 0, 0u, 0u);
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

// The position BK reduction indices further on, by subtraction.
fn k_advance(mode: u32, ks: KState) -> KState {
    if mode != BACKWARD_WEIGHT {
        return ks;
    }
    var s = ks;
    s.ox += BK;
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

fn word(i: u32) -> u32 {
    return a[i >> 2u][i & 3u];
}

fn inside_input(iy: i32, ix: i32) -> bool {
    return iy >= 0 && ix >= 0 && iy < i32(p.in_h) && ix < i32(p.in_w);
}

// The input's element i (f32, or the scaled u8 pixel).
fn input_value(i: u32) -> f32 {
    if p.input_u8 != 0u {
        return f32((word(i >> 2u) >> ((i & 3u) * 8u)) & 0xffu) * (1.0 / 255.0);
    }
    return bitcast<f32>(word(i));
}

// The input's elements i..i+3 (i a multiple of 4).
fn input_value4(i: u32) -> vec4<f32> {
    if p.input_u8 != 0u {
        let w = word(i >> 2u);
        return vec4<f32>(vec4<u32>(w, w >> 8u, w >> 16u, w >> 24u) & vec4<u32>(0xffu)) * (1.0 / 255.0);
    }
    return bitcast<vec4<f32>>(a[i >> 2u]);
}

fn input_index(base: u32, iy: i32, ix: i32, ic: u32) -> u32 {
    return base + (u32(iy) * p.in_w + u32(ix)) * p.in_c + ic;
}

// The output gradient's element under tap (t0, t1) for input pixel `row`, or -1 when that
// tap's output lies off the stride grid or outside the output.
fn backward_input_index(row: ARow, t0: vec4<u32>, oc: u32) -> i32 {
    if row.ry != t0.y || row.rx != t0.w {
        return -1;
    }
    let oy = row.y - i32(t0.x);
    let ox = row.x - i32(t0.z);
    if oy < 0 || ox < 0 || oy >= i32(p.out_h) || ox >= i32(p.out_w) {
        return -1;
    }
    return i32(row.base + (u32(oy) * p.out_w + u32(ox)) * p.out_c + oc);
}

fn load_a(mode: u32, row: ARow, m: u32, k: u32, ks: KState) -> f32 {
    switch mode {
        // x under tap k = (ky, kx, ic) of output position row.
        case FORWARD: {
            let t = taps[2u * k];
            let iy = row.y + i32(t.x);
            let ix = row.x + i32(t.y);
            if !inside_input(iy, ix) {
                return 0.0;
            }
            return input_value(input_index(row.base, iy, ix, t.z));
        }
        // The output gradient input pixel row receives through tap k = (ky, kx, oc).
        case BACKWARD_INPUT: {
            let i = backward_input_index(row, taps[2u * k], taps[2u * k + 1u].x);
            if i < 0 {
                return 0.0;
            }
            return bitcast<f32>(word(u32(i)));
        }
        // x under tap m = (ky, kx, ic) of output position k.
        default: {
            let t = taps[2u * m];
            let iy = i32(ks.oy * p.stride_h + t.x) - i32(p.pad_top);
            let ix = i32(ks.ox * p.stride_w + t.y) - i32(p.pad_left);
            if !inside_input(iy, ix) {
                return 0.0;
            }
            return input_value(input_index(ks.img * p.in_h * p.in_w * p.in_c, iy, ix, t.z));
        }
    }
}

// Four channels of one pixel: forward, reduction indices k..k+3; backward input likewise (four
// output channels of one tap); backward weight, rows m..m+3.
fn load_a4(mode: u32, row: ARow, m: u32, k: u32, ks: KState) -> vec4<f32> {
    switch mode {
        case FORWARD: {
            let t = taps[2u * k];
            let iy = row.y + i32(t.x);
            let ix = row.x + i32(t.y);
            if !inside_input(iy, ix) {
                return vec4<f32>(0.0);
            }
            return input_value4(input_index(row.base, iy, ix, t.z));
        }
        case BACKWARD_INPUT: {
            let i = backward_input_index(row, taps[2u * k], taps[2u * k + 1u].x);
            if i < 0 {
                return vec4<f32>(0.0);
            }
            return bitcast<vec4<f32>>(a[u32(i) >> 2u]);
        }
        default: {
            let t = taps[2u * m];
            let iy = i32(ks.oy * p.stride_h + t.x) - i32(p.pad_top);
            let ix = i32(ks.ox * p.stride_w + t.y) - i32(p.pad_left);
            if !inside_input(iy, ix) {
                return vec4<f32>(0.0);
            }
            return input_value4(input_index(ks.img * p.in_h * p.in_w * p.in_c, iy, ix, t.z));
        }
    }
}

// B's element index: backward input, W[ky, kx, ic, oc] with k = (ky, kx, oc), col = ic; the
// forward's W and the backward weight's dy are both [k, n] row-major.
fn b_index(mode: u32, k: u32, col: u32) -> u32 {
    if mode == BACKWARD_INPUT {
        let t = taps[2u * k + 1u];
        return (t.y * p.in_c + col) * p.out_c + t.x;
    }
    return k * p.n + col;
}

fn load_b(mode: u32, k: u32, col: u32) -> f32 {
    let i = b_index(mode, k, col);
    return b[i >> 2u][i & 3u];
}

fn load_b4(mode: u32, k: u32, col: u32) -> vec4<f32> {
    return b[b_index(mode, k, col) >> 2u];
}

fn partial(i: u32) -> f32 {
    return bitcast<f32>(word(i));
}

@compute @workgroup_size(WG_X, WG_Y)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>) {
    gemm_tiles(FORWARD, wid, groups, lid);
}

@compute @workgroup_size(WG_X, WG_Y)
fn backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                  @builtin(local_invocation_id) lid: vec3<u32>) {
    gemm_tiles(BACKWARD_INPUT, wid, groups, lid);
}

@compute @workgroup_size(WG_X, WG_Y)
fn backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                   @builtin(local_invocation_id) lid: vec3<u32>) {
    gemm_tiles(BACKWARD_WEIGHT, wid, groups, lid);
}
