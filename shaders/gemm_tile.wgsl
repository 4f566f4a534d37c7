// The tiled matrix product shared by dense.wgsl and conv2d.wgsl (prepended to both).
//
//   C[m, col] = epilogue(sum over k of A(m, k) * B(k, col))
//
// The epilogue (`finish`) applies what the layers after the product would: the bias, then a
// ReLU and a dropout mask on an activation; on a gradient, the ReLU mask of the activation it
// flows back into (`act` > 0) and the dropout mask. A dispatch that needs none passes zeros.
//
// The including file defines how operands are read: dense operands are strided matrices,
// convolution operands are gathered from NHWC tensors on the fly (implicit im2col), so no
// unfolded copy is ever stored. What depends only on a row of A (`ARow`, from `a_row`) is
// computed once per thread before the K loop, and what depends on the reduction index of the
// thread's column of the K tile (`KState`, from `k_start`, moved on by `k_advance`) is carried
// through it, so `load_a(mode, row, k, ks)` and `load_b(mode, k, col)` divide by no run-time
// value inside the loop.
//
// Each workgroup computes one TILE x TILE block of C over one slice of the reduction
// ("split-K": slices write their own partial block, `reduce_splits` sums them in a fixed order,
// so results are deterministic). Workgroups are numbered linearly across x and y so that a
// dispatch never needs more than 65,535 groups in one dimension.

struct Gemm {
    m: u32,
    n: u32,
    k: u32,
    // Reduction length of one split; the number of splits.
    k_chunk: u32,
    splits: u32,
    // Tiles across n, and tiles in the whole of C.
    tiles_n: u32,
    tiles: u32,
    has_bias: u32,
    // A row of A that is all ones (so that row of C is the bias gradient), or NONE.
    ones_row: u32,
    // Strided operands (dense): A(m, k) = a[m * a_rs + k * a_cs], B likewise.
    a_rs: u32,
    a_cs: u32,
    b_rs: u32,
    b_cs: u32,
    // Convolution geometry (NHWC activations, [kh, kw, c_in, c_out] weights).
    in_h: u32,
    in_w: u32,
    in_c: u32,
    out_h: u32,
    out_w: u32,
    out_c: u32,
    kernel_h: u32,
    kernel_w: u32,
    stride_h: u32,
    stride_w: u32,
    pad_top: u32,
    pad_left: u32,
    // Epilogue: ACT_*; a dropout mask (0 or 1; per-key hash, threshold, scale).
    activation: u32,
    dropout: u32,
    drop_base: u32,
    drop_threshold: u32,
    drop_scale: f32,
}

const ACT_NONE: u32 = 0u;
const ACT_RELU: u32 = 1u;
const ACT_RELU_MASK: u32 = 2u;

const NONE: u32 = 0xffffffffu;
const TILE: u32 = 64u;
const TILE_K: u32 = 16u;
// Threads per side of the 16 x 16 workgroup; each computes a 4 x 4 block of C.
const THREADS: u32 = 16u;
const PER_THREAD: u32 = 4u;
// Padded row of the A tile, so that storing a column does not hit one memory bank.
const A_STRIDE: u32 = 65u;

@group(0) @binding(0) var<uniform> p: Gemm;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
// The ones row of C (a bias gradient).
@group(0) @binding(5) var<storage, read_write> c_ones: array<f32>;
// The activation a gradient flows back into (ACT_RELU_MASK).
@group(0) @binding(6) var<storage, read> act: array<f32>;

var<workgroup> tile_a: array<f32, 1040>; // TILE_K * A_STRIDE
var<workgroup> tile_b: array<f32, 1024>; // TILE_K * TILE

fn fetch_a(mode: u32, row: ARow, m: u32, k: u32, ks: KState, k_end: u32) -> f32 {
    if m >= p.m || k >= k_end {
        return 0.0;
    }
    if m == p.ones_row {
        return 1.0;
    }
    return load_a(mode, row, k, ks);
}

fn fetch_b(mode: u32, k: u32, col: u32, k_end: u32) -> f32 {
    if k >= k_end || col >= p.n {
        return 0.0;
    }
    return load_b(mode, k, col);
}

// Element `idx` (row-major in C, column `col`) of the finished product.
fn finish(idx: u32, col: u32, sum: f32) -> f32 {
    var v = sum;
    if p.has_bias != 0u {
        v += bias[col];
    }
    if p.activation == ACT_RELU {
        v = max(v, 0.0);
    } else if p.activation == ACT_RELU_MASK {
        v = select(0.0, v, act[idx] > 0.0);
    }
    if p.dropout != 0u {
        v = select(0.0, v * p.drop_scale, dropout_keeps(p.drop_base, p.drop_threshold, idx));
    }
    return v;
}

// C's element (row, col) with one split: the ones row goes to `c_ones`, the rest is finished.
fn store_finished(row: u32, col: u32, v: f32) {
    if row == p.ones_row {
        c_ones[col] = v;
    } else {
        let idx = row * p.n + col;
        c[idx] = finish(idx, col, v);
    }
}

fn gemm_tiles(mode: u32, wid: vec3<u32>, groups: vec3<u32>, lid: vec3<u32>) {
    let id = wid.x + wid.y * groups.x;
    let split = id / p.tiles;
    if split >= p.splits {
        return;
    }
    let tile = id % p.tiles;
    let row0 = (tile / p.tiles_n) * TILE;
    let col0 = (tile % p.tiles_n) * TILE;
    let k_begin = split * p.k_chunk;
    let k_end = min(k_begin + p.k_chunk, p.k);
    let t = lid.y * THREADS + lid.x;
    // Thread t loads rows t / TILE_K + 16 i of the A tile, all in column t % TILE_K.
    let ak = t % TILE_K;
    let am0 = t / TILE_K;
    var rows: array<ARow, 4>;
    rows[0] = a_row(mode, row0 + am0);
    rows[1] = a_row(mode, row0 + am0 + 16u);
    rows[2] = a_row(mode, row0 + am0 + 32u);
    rows[3] = a_row(mode, row0 + am0 + 48u);
    var ks = k_start(mode, k_begin + ak);

    var acc: array<array<f32, 4>, 4>;
    for (var k0 = k_begin; k0 < k_end; k0 += TILE_K) {
        for (var i = 0u; i < 4u; i++) {
            let e = t + i * THREADS * THREADS;
            let am = am0 + 16u * i;
            tile_a[ak * A_STRIDE + am] = fetch_a(mode, rows[i], row0 + am, k0 + ak, ks, k_end);
            let bk = e / TILE;
            let bn = e % TILE;
            tile_b[bk * TILE + bn] = fetch_b(mode, k0 + bk, col0 + bn, k_end);
        }
        ks = k_advance(mode, ks);
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk++) {
            var av: array<f32, 4>;
            var bv: array<f32, 4>;
            for (var i = 0u; i < PER_THREAD; i++) {
                av[i] = tile_a[kk * A_STRIDE + lid.y + THREADS * i];
                bv[i] = tile_b[kk * TILE + lid.x + THREADS * i];
            }
            for (var i = 0u; i < PER_THREAD; i++) {
                for (var j = 0u; j < PER_THREAD; j++) {
                    acc[i][j] = fma(av[i], bv[j], acc[i][j]);
                }
            }
        }
        workgroupBarrier();
    }

    let base = split * p.m * p.n;
    for (var i = 0u; i < PER_THREAD; i++) {
        let row = row0 + lid.y + THREADS * i;
        if row >= p.m {
            continue;
        }
        for (var j = 0u; j < PER_THREAD; j++) {
            let col = col0 + lid.x + THREADS * j;
            if col >= p.n {
                continue;
            }
            if p.splits == 1u {
                store_finished(row, col, acc[i][j]);
            } else {
                c[base + row * p.n + col] = acc[i][j];
            }
        }
    }
}

// Sums the splits' partial products (`a` holds them, split-major) and stores them as one split
// would.
@compute @workgroup_size(256)
fn reduce_splits(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    let idx = (wid.x + wid.y * groups.x) * 256u + li;
    let mn = p.m * p.n;
    if idx >= mn {
        return;
    }
    var v = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        v += a[s * mn + idx];
    }
    store_finished(idx / p.n, idx % p.n, v);
}
