// y[t][y_col0 + r] = w.row(r) . x[t] for the rows of one weight part (a
// matrix larger than the binding limit is split into parts by rows).
// Appended to bytes.wgsl and one quant/*.wgsl, which give `dequant32`.
// Workgroup (r, tile): 32 threads share the 32-value chunks of row r, each
// chunk dequantized once and dotted with up to TN tokens; activations stay
// f32. Grid: x * y cover the rows (x at most 65535), z the token tiles.

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

const WG: u32 = 32u;
const TN: u32 = 8u;

var<workgroup> partial: array<array<f32, TN>, WG>;

@compute @workgroup_size(32)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wg.x + wg.y * p.grid_x;
    let t0 = wg.z * TN;
    let nt = min(TN, p.n_tok - t0);
    var acc: array<f32, TN>;
    if row < p.rows {
        let n_chunks = p.cols / 32u;
        let per_block = QK / 32u;
        let base = row * p.row_bytes;
        for (var c = lid; c < n_chunks; c += WG) {
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
    }
    for (var t = 0u; t < TN; t++) {
        partial[lid][t] = acc[t];
    }
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            for (var t = 0u; t < TN; t++) {
                partial[lid][t] += partial[lid + s][t];
            }
        }
        workgroupBarrier();
    }
    if lid == 0u && row < p.rows {
        for (var t = 0u; t < nt; t++) {
            y[p.y_off + (t0 + t) * p.y_stride + p.y_col0 + row] = partial[0][t];
        }
    }
}
