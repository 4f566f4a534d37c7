// Dense layers and plain matrix products, on the tiled product of gemm_tile.wgsl.
// Operands are strided matrices, so one kernel serves every pass (n examples, W: [in, out]):
//   forward          y[n, out]  = x[n, in] * W + b       A = x (row-major),   B = W
//   backward input   dx[n, in]  = dy[n, out] * W^T      A = dy,              B = W read transposed
//   backward weight  dW[in, out] = x^T * dy, db = 1^T dy A = x read transposed with a ones row
//                                                         appended (its row of C is db), B = dy
// The backward-weight reduction runs over the batch, so it is split (see `reduce_splits`).

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

fn load_a(mode: u32, row: ARow, k: u32, ks: KState) -> f32 {
    return a[row.base + k * p.a_cs];
}

fn load_b(mode: u32, k: u32, col: u32) -> f32 {
    return b[k * p.b_rs + col * p.b_cs];
}

@compute @workgroup_size(16, 16)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    gemm_tiles(0u, wid, groups, lid);
}
