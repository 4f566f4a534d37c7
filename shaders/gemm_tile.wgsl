// The tiled matrix product shared by dense.wgsl and conv2d.wgsl (prepended to both, after the
// tile constants of one variant: BM x BN outputs per workgroup, TM x TN per thread).
//
//   C[m, col] = epilogue(sum over k of A(m, k) * B(k, col))
//
// The epilogue (`finish`) applies what the layers after the product would: the bias, then an
// activation and a dropout mask on an activation; on a gradient, the activation's slope read
// from the activation it flows back into (`act`) and the dropout mask. A dispatch that needs
// none passes zeros.
//
// The including file declares the operand buffers `a` and `b` and defines how operands are
// read: dense operands are strided matrices, convolution operands are gathered from NHWC
// tensors on the fly (implicit im2col), so no unfolded copy is ever stored. Operands are read
// in groups of four elements along the dimension whose stride is 1 (`a_order`, `b_order`), so
// neighbouring threads read neighbouring addresses, and a group is one vec4 load where the
// dispatcher found it aligned (`a_vec4`, `b_vec4`). What depends only on a row of A (`ARow`,
// from `a_row`) is computed once per thread before the K loop, and what depends on the
// reduction index of a group read along m (`KState`, from `k_start`, moved on by `k_advance`)
// is carried through it, so the loaders divide by no run-time value inside the loop.
//
// Each thread accumulates TM x TN outputs in registers from vec4 reads of the K tile in
// workgroup memory (TM / 4 + TN / 4 reads per TM * TN multiply-adds), while the next K tile
// is already on its way from global memory into registers.
//
// Each workgroup computes one BM x BN block of C over one slice of the reduction ("split-K":
// slices write their own partial block, `reduce_splits` sums them in a fixed order, so results
// are deterministic). Workgroups are numbered linearly across x and y so that a dispatch never
// needs more than 65,535 groups in one dimension.

struct Gemm {
    m: u32,
    n: u32,
    k: u32,
    // Reduction length of one split (a multiple of BK); the number of splits.
    k_chunk: u32,
    splits: u32,
    // Tiles across n, and tiles in the whole of C.
    tiles_n: u32,
    tiles: u32,
    has_bias: u32,
    // A row of A that is all ones (so that row of C is the bias gradient), or NONE.
    ones_row: u32,
    // How groups of four are read: ALONG_K or ALONG_MN; as one vec4 load (1) or four (0).
    a_order: u32,
    b_order: u32,
    a_vec4: u32,
    b_vec4: u32,
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
    // The convolution's input holds u8 pixels, four to a word, scaled to [0, 1] as they are read.
    input_u8: u32,
    // Epilogue: an activation (ACT_* of activation.wgsl, its alpha), applied to the sum (0) or
    // its slope at `act` multiplied in (1, on a gradient); a dropout mask (0 or 1; per-key hash,
    // threshold, scale).
    act: u32,
    act_alpha: f32,
    act_slope: u32,
    dropout: u32,
    drop_base: u32,
    drop_threshold: u32,
    drop_scale: f32,
}

const ALONG_K: u32 = 0u;
const ALONG_MN: u32 = 1u;

const NONE: u32 = 0xffffffffu;
// Reduction indices per K tile.
const BK: u32 = 8u;
// Threads across the columns and the rows of the tile.
const WG_X: u32 = BN / TN;
const WG_Y: u32 = BM / TM;
const THREADS: u32 = WG_X * WG_Y;
// Groups of four values in one K tile of A and of B, and how many each thread reads.
const A_TILE_GROUPS: u32 = BM * BK / 4u;
const B_TILE_GROUPS: u32 = BN * BK / 4u;
const A_GROUPS: u32 = (A_TILE_GROUPS + THREADS - 1u) / THREADS;
const B_GROUPS: u32 = (B_TILE_GROUPS + THREADS - 1u) / THREADS;
// vec4s per column of the K tile of A and of B, and per thread's rows and columns.
const BM4: u32 = BM / 4u;
const BN4: u32 = BN / 4u;
const BK4: u32 = BK / 4u;
const TM4: u32 = TM / 4u;
const TN4: u32 = TN / 4u;

@group(0) @binding(0) var<uniform> p: Gemm;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
// The ones row of C (a bias gradient).
@group(0) @binding(5) var<storage, read_write> c_ones: array<f32>;
// The activation a gradient flows back into (`act_slope`).
@group(0) @binding(6) var<storage, read> act: array<f32>;

// The K tile, k-major: tile_a[k * BM / 4 + m / 4] holds rows m..m+3 of column k.
var<workgroup> tile_a: array<vec4<f32>, BK * BM4>;
var<workgroup> tile_b: array<vec4<f32>, BK * BN4>;

// Where one of a thread's groups sits in the tile: its first row (A) or column (B), its first
// reduction index, and whether it exists (the last threads may have fewer groups).
struct Group {
    mn: u32,
    k: u32,
    live: bool,
}

fn a_group(t: u32, i: u32) -> Group {
    let g = t + i * THREADS;
    if p.a_order == ALONG_K {
        return Group(g / BK4, (g % BK4) * 4u, g < A_TILE_GROUPS);
    }
    return Group((g % BM4) * 4u, g / BM4, g < A_TILE_GROUPS);
}

fn b_group(t: u32, i: u32) -> Group {
    let g = t + i * THREADS;
    if p.b_order == ALONG_K {
        return Group(g / BK4, (g % BK4) * 4u, g < B_TILE_GROUPS);
    }
    return Group((g % BN4) * 4u, g / BN4, g < B_TILE_GROUPS);
}

// Four values of A from (m, k): along k, A(m, k..k+3); along m, A(m..m+3, k). Zero outside A
// and the split's slice; the ones row reads ones.
fn fetch_a(mode: u32, row: ARow, m: u32, k: u32, ks: KState, k_end: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if p.a_order == ALONG_K {
        if m >= p.m || k >= k_end {
            return v;
        }
        if m == p.ones_row {
            return select(vec4<f32>(0.0), vec4<f32>(1.0), vec4<u32>(k, k + 1u, k + 2u, k + 3u) < vec4<u32>(k_end));
        }
        if p.a_vec4 != 0u {
            return load_a4(mode, row, m, k, ks);
        }
        for (var j = 0u; j < 4u; j++) {
            if k + j < k_end {
                v[j] = load_a(mode, row, m, k + j, ks);
            }
        }
        return v;
    }
    if k >= k_end || m >= p.m {
        return v;
    }
    if p.a_vec4 != 0u && m + 3u < p.ones_row && m + 3u < p.m {
        return load_a4(mode, row, m, k, ks);
    }
    for (var j = 0u; j < 4u; j++) {
        let mj = m + j;
        if mj == p.ones_row {
            v[j] = 1.0;
        } else if mj < p.m {
            v[j] = load_a(mode, row, mj, k, ks);
        }
    }
    return v;
}

// Four values of B from (k, col): along k, B(k..k+3, col); along n, B(k, col..col+3).
fn fetch_b(mode: u32, k: u32, col: u32, k_end: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if p.b_order == ALONG_K {
        if col >= p.n || k >= k_end {
            return v;
        }
        if p.b_vec4 != 0u {
            return load_b4(mode, k, col);
        }
        for (var j = 0u; j < 4u; j++) {
            if k + j < k_end {
                v[j] = load_b(mode, k + j, col);
            }
        }
        return v;
    }
    if k >= k_end || col >= p.n {
        return v;
    }
    if p.b_vec4 != 0u {
        return load_b4(mode, k, col);
    }
    for (var j = 0u; j < 4u; j++) {
        if col + j < p.n {
            v[j] = load_b(mode, k, col + j);
        }
    }
    return v;
}

// Element `idx` (row-major in C, column `col`) of the finished product.
fn finish(idx: u32, col: u32, sum: f32) -> f32 {
    var v = sum;
    if p.has_bias != 0u {
        v += bias[col];
    }
    if p.act != ACT_NONE {
        if p.act_slope != 0u {
            v *= slope_at_output(p.act, p.act_alpha, act[idx]);
        } else {
            v = activate(p.act, p.act_alpha, v);
        }
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
    let row0 = (tile / p.tiles_n) * BM;
    let col0 = (tile % p.tiles_n) * BN;
    let k_begin = split * p.k_chunk;
    let k_end = min(k_begin + p.k_chunk, p.k);
    let t = lid.y * WG_X + lid.x;

    // Each group's place in the tile and what its loads need, worked out once.
    var ga: array<Group, A_GROUPS>;
    var rows: array<ARow, A_GROUPS>;
    var ks: array<KState, A_GROUPS>;
    // Where a group goes in the K tile: its vec4 and, for a group along k, its lane in it.
    var a_store: array<u32, A_GROUPS>;
    var a_lane: array<u32, A_GROUPS>;
    for (var i = 0u; i < A_GROUPS; i++) {
        ga[i] = a_group(t, i);
        rows[i] = a_row(mode, row0 + ga[i].mn);
        ks[i] = k_start(mode, k_begin + ga[i].k);
        a_store[i] = ga[i].k * BM4 + ga[i].mn / 4u;
        a_lane[i] = ga[i].mn % 4u;
    }
    var gb: array<Group, B_GROUPS>;
    var b_store: array<u32, B_GROUPS>;
    var b_lane: array<u32, B_GROUPS>;
    for (var i = 0u; i < B_GROUPS; i++) {
        gb[i] = b_group(t, i);
        b_store[i] = gb[i].k * BN4 + gb[i].mn / 4u;
        b_lane[i] = gb[i].mn % 4u;
    }

    // The first K tile into registers.
    var next_a: array<vec4<f32>, A_GROUPS>;
    var next_b: array<vec4<f32>, B_GROUPS>;
    for (var i = 0u; i < A_GROUPS; i++) {
        if ga[i].live {
            next_a[i] = fetch_a(mode, rows[i], row0 + ga[i].mn, k_begin + ga[i].k, ks[i], k_end);
        }
    }
    for (var i = 0u; i < B_GROUPS; i++) {
        if gb[i].live {
            next_b[i] = fetch_b(mode, k_begin + gb[i].k, col0 + gb[i].mn, k_end);
        }
    }

    var acc: array<array<vec4<f32>, TN4>, TM>;
    for (var k0 = k_begin; k0 < k_end; k0 += BK) {
        // Registers -> the K tile (a group along k is a column of the k-major tile).
        for (var i = 0u; i < A_GROUPS; i++) {
            if !ga[i].live {
                continue;
            }
            if p.a_order == ALONG_K {
                for (var j = 0u; j < 4u; j++) {
                    tile_a[a_store[i] + j * BM4][a_lane[i]] = next_a[i][j];
                }
            } else {
                tile_a[a_store[i]] = next_a[i];
            }
        }
        for (var i = 0u; i < B_GROUPS; i++) {
            if !gb[i].live {
                continue;
            }
            if p.b_order == ALONG_K {
                for (var j = 0u; j < 4u; j++) {
                    tile_b[b_store[i] + j * BN4][b_lane[i]] = next_b[i][j];
                }
            } else {
                tile_b[b_store[i]] = next_b[i];
            }
        }
        workgroupBarrier();

        // The next K tile, from global memory, while this one is multiplied.
        let k1 = k0 + BK;
        if k1 < k_end {
            for (var i = 0u; i < A_GROUPS; i++) {
                ks[i] = k_advance(mode, ks[i]);
                if ga[i].live {
                    next_a[i] = fetch_a(mode, rows[i], row0 + ga[i].mn, k1 + ga[i].k, ks[i], k_end);
                }
            }
            for (var i = 0u; i < B_GROUPS; i++) {
                if gb[i].live {
                    next_b[i] = fetch_b(mode, k1 + gb[i].k, col0 + gb[i].mn, k_end);
                }
            }
        }

        // Thread (lid.x, lid.y) owns rows 4 lid.y + (BM / (TM / 4)) r + {0..3}, r < TM / 4,
        // and columns 4 lid.x + (BN / (TN / 4)) s + {0..3}, s < TN / 4.
        for (var kk = 0u; kk < BK; kk++) {
            var av: array<vec4<f32>, TM4>;
            var bv: array<vec4<f32>, TN4>;
            for (var r = 0u; r < TM4; r++) {
                av[r] = tile_a[kk * BM4 + r * WG_Y + lid.y];
            }
            for (var s = 0u; s < TN4; s++) {
                bv[s] = tile_b[kk * BN4 + s * WG_X + lid.x];
            }
            for (var r = 0u; r < TM4; r++) {
                for (var e = 0u; e < 4u; e++) {
                    let a_value = vec4<f32>(av[r][e]);
                    for (var s = 0u; s < TN4; s++) {
                        acc[r * 4u + e][s] = fma(a_value, bv[s], acc[r * 4u + e][s]);
                    }
                }
            }
        }
        workgroupBarrier();
    }

    let base = split * p.m * p.n;
    for (var r = 0u; r < TM4; r++) {
        for (var e = 0u; e < 4u; e++) {
            let row = row0 + (r * WG_Y + lid.y) * 4u + e;
            if row >= p.m {
                continue;
            }
            for (var s = 0u; s < TN4; s++) {
                for (var f = 0u; f < 4u; f++) {
                    let col = col0 + (s * WG_X + lid.x) * 4u + f;
                    if col >= p.n {
                        continue;
                    }
                    if p.splits == 1u {
                        store_finished(row, col, acc[r * 4u + e][s][f]);
                    } else {
                        c[base + row * p.n + col] = acc[r * 4u + e][s][f];
                    }
                }
            }
        }
    }
}

// Sums the splits' partial products (`partials`, split-major) and stores them as one split
// would. Each workgroup finishes 64 elements of C; its four rows of threads each sum every
// fourth split, then the four partial sums are added in order.
const REDUCE_LANES: u32 = 4u;
var<workgroup> lane_sums: array<f32, 256>;

fn reduce(wid: vec3<u32>, groups: vec3<u32>, li: u32) {
    let e = li % 64u;
    let lane = li / 64u;
    let idx = (wid.x + wid.y * groups.x) * 64u + e;
    let mn = p.m * p.n;
    var v = 0.0;
    if idx < mn {
        for (var s = lane; s < p.splits; s += REDUCE_LANES) {
            v += partial(s * mn + idx);
        }
    }
    lane_sums[li] = v;
    workgroupBarrier();
    if lane == 0u && idx < mn {
        let total = ((lane_sums[e] + lane_sums[e + 64u]) + lane_sums[e + 128u]) + lane_sums[e + 192u];
        store_finished(idx / p.n, idx % p.n, total);
    }
}
