// The matmul of matmul.wgsl (same parameters and bindings) with one thread
// per (row, token tile) and no workgroup memory or barriers: the better
// shape for a CPU adapter such as lavapipe, where a workgroup's threads are
// SIMD lanes and barriers are costly. Grid: x * y cover the rows in
// workgroups of 64, z the token tiles.

struct MatmulParams {
    rows: u32,
    cols: u32,
    n_tok: u32,
    y_stride: u32,
    y_col0: u32,
    row_bytes: u32,
    grid_x: u32,
    y_off: u32,
}

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

const TN: u32 = 8u;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.x + gid.y * p.grid_x * 64u;
    if row >= p.rows {
        return;
    }
    let t0 = gid.z * TN;
    let nt = min(TN, p.n_tok - t0);
    let n_chunks = p.cols / 32u;
    let per_block = QK / 32u;
    let base = row * p.row_bytes;
    var acc: array<f32, TN>;
    for (var c = 0u; c < n_chunks; c++) {
        dequant32(base + (c / per_block) * BLOCK_BYTES, c % per_block);
        for (var t = 0u; t < nt; t++) {
            let xb = ((t0 + t) * p.cols + c * 32u) / 4u;
            var s = 0.0;
            for (var i = 0u; i < 8u; i++) {
                s += dot(dq[i], x[xb + i]);
            }
            acc[t] += s;
        }
    }
    for (var t = 0u; t < nt; t++) {
        y[p.y_off + (t0 + t) * p.y_stride + p.y_col0 + row] = acc[t];
    }
}
