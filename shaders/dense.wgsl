// Dense layers and plain matrix products, on the tiled product of gemm_tile.wgsl.
// Operands are strided matrices, so one kernel serves every pass (n examples, W: [in, out]):
//   forward          y[n, out]  = x[n, in] * W + b       A = x (row-major),   B = W
//   backward input   dx[n, in]  = dy[n, out] * W^T      A = dy,              B = W read transposed
//   backward weight  dW[in, out] = x^T * dy, db = 1^T dy A = x read transposed with a ones row
//                                                         appended (its row of C is db), B = dy
// The backward-weight reduction runs over the batch, so it may be split (see `reduce_splits`).
// Both operands are bound as vec4 arrays: a group of four along the stride-1 dimension is one
// load where the dispatcher found it aligned, four scalar reads otherwise.

@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;

struct ARow {
    base: u32,
}

struct KState {
    unused: u32,
}

fn a_row(mode: u32, m: u32) -> ARow {
    return ARow(m * p.a_rs);
}

fn k_start(mode: u32, k: u32) -> KState {
    return KState(0u);
}

fn k_advance(mode: u32, ks: KState) -> KState {
    return ks;
}

fn load_a(mode: u32, row: ARow, m: u32, k: u32, ks: KState) -> f32 {
    let i = m * p.a_rs + k * p.a_cs;
    return a[i >> 2u][i & 3u];
}

// A(m, k) and the three values after it in memory (along k or m, whichever has stride 1).
fn load_a4(mode: u32, row: ARow, m: u32, k: u32, ks: KState) -> vec4<f32> {
    return a[(m * p.a_rs + k * p.a_cs) >> 2u];
}

fn load_b(mode: u32, k: u32, col: u32) -> f32 {
    let i = k * p.b_rs + col * p.b_cs;
    return b[i >> 2u][i & 3u];
}

fn load_b4(mode: u32, k: u32, col: u32) -> vec4<f32> {
    return b[(k * p.b_rs + col * p.b_cs) >> 2u];
}

fn partial(i: u32) -> f32 {
    return a[i >> 2u][i & 3u];
}

@compute @workgroup_size(WG_X, WG_Y)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    gemm_tiles(0u, wid, groups, lid);
}

@compute @workgroup_size(256)
fn reduce_splits(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    reduce(wid, groups, li);
}
