// The matmul of matmul.wgsl (same parameters and bindings) with one thread
// per (RN rows, token tile) and no workgroup memory or barriers: the better
// shape for a CPU adapter such as lavapipe, where a workgroup's threads are
// SIMD lanes and barriers are costly. Mesa's llvmpipe loads a storage value
// lane by lane, so each activation vec4 loaded is used for RN rows, and each
// dequantized chunk for up to TN tokens (on a 2-core AMD Zen 3, Gemma 3's
// prefill about 3x faster than with one row and 8 tokens per thread). Each
// row's sum is formed per 32-value chunk, then chunk after chunk, for every
// RN and TN.
// Grid: x * y cover the rows in workgroups of 32 * RN, z the token tiles.

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

// Tokens per thread (ROWS_TOKENS in shaders.rs).
const TN: u32 = 16u;
// Rows per thread (ROWS_PER_THREAD in shaders.rs).
const RN: u32 = 16u;

@compute @workgroup_size(32)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row0 = ((wg.x + wg.y * p.grid_x) * 32u + lid) * RN;
    if row0 >= p.rows {
        return;
    }
    let t0 = wg.z * TN;
    let nt = min(TN, p.n_tok - t0);
    let nr = min(RN, p.rows - row0);
    let n_chunks = p.cols / 32u;
    let per_block = QK / 32u;
    var acc: array<array<f32, TN>, RN>;
    var wq: array<array<vec4<f32>, 8>, RN>;
    for (var c = 0u; c < n_chunks; c++) {
        for (var r = 0u; r < RN; r++) {
            // Rows past the end repeat the last one; they are not written.
            let row = row0 + min(r, nr - 1u);
            dequant32(row * p.row_bytes + (c / per_block) * BLOCK_BYTES, c % per_block);
            wq[r] = dq;
        }
        for (var t = 0u; t < nt; t++) {
            let xb = ((t0 + t) * p.cols + c * 32u) / 4u;
            var s: array<f32, RN>;
            for (var i = 0u; i < 8u; i++) {
                let xv = x[xb + i];
                for (var r = 0u; r < RN; r++) {
                    s[r] += dot(wq[r][i], xv);
                }
            }
            for (var r = 0u; r < RN; r++) {
                acc[r][t] += s[r];
            }
        }
    }
    for (var r = 0u; r < nr; r++) {
        for (var t = 0u; t < nt; t++) {
            y[p.y_off + (t0 + t) * p.y_stride + p.y_col0 + row0 + r] = acc[r][t];
        }
    }
}
