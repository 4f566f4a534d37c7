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

// The input value under tap `patch` (ky, kx, ic) = `tap_channel` of output position `row` (img, oy, ox).
fn unfolded_input(row: u32, tap_channel: u32) -> f32 {
    let positions = p.out_h * p.out_w;
    let img = row / positions;
    let pos = row % positions;
    let oy = pos / p.out_w;
    let ox = pos % p.out_w;
    let ic = tap_channel % p.in_c;
    let tap = tap_channel / p.in_c;
    let ky = tap / p.kernel_w;
    let kx = tap % p.kernel_w;
    let iy = i32(oy * p.stride_h + ky) - i32(p.pad_top);
    let ix = i32(ox * p.stride_w + kx) - i32(p.pad_left);
    if iy < 0 || ix < 0 || iy >= i32(p.in_h) || ix >= i32(p.in_w) {
        return 0.0;
    }
    return a[((img * p.in_h + u32(iy)) * p.in_w + u32(ix)) * p.in_c + ic];
}

// The output gradient that input position `row` (img, iy, ix) receives through tap (ky, kx, oc).
fn scattered_gradient(row: u32, k: u32) -> f32 {
    let pixels = p.in_h * p.in_w;
    let img = row / pixels;
    let pix = row % pixels;
    let iy = pix / p.in_w;
    let ix = pix % p.in_w;
    let oc = k % p.out_c;
    let tap = k / p.out_c;
    let ky = tap / p.kernel_w;
    let kx = tap % p.kernel_w;
    let ty = i32(iy + p.pad_top) - i32(ky);
    let tx = i32(ix + p.pad_left) - i32(kx);
    if ty < 0 || tx < 0 || u32(ty) % p.stride_h != 0u || u32(tx) % p.stride_w != 0u {
        return 0.0;
    }
    let oy = u32(ty) / p.stride_h;
    let ox = u32(tx) / p.stride_w;
    if oy >= p.out_h || ox >= p.out_w {
        return 0.0;
    }
    return a[((img * p.out_h + oy) * p.out_w + ox) * p.out_c + oc];
}

fn load_a(mode: u32, m: u32, k: u32) -> f32 {
    switch mode {
        case FORWARD: { return unfolded_input(m, k); }
        case BACKWARD_INPUT: { return scattered_gradient(m, k); }
        default: { return unfolded_input(k, m); }
    }
}

fn load_b(mode: u32, k: u32, col: u32) -> f32 {
    switch mode {
        // W[ky, kx, ic, oc] with k = (ky, kx, oc), col = ic.
        case BACKWARD_INPUT: {
            let tap = k / p.out_c;
            let oc = k % p.out_c;
            return b[(tap * p.in_c + col) * p.out_c + oc];
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
