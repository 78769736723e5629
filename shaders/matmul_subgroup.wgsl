// The matmul of matmul.wgsl (same parameters, bindings and grid) with the
// per-row sum reduced by subgroupAdd within each subgroup and then across
// the workgroup's subgroups (any subgroup size: 4 to 128), instead of a
// tree of barriers in workgroup memory. Used when the adapter offers
// subgroups (wgpu's SUBGROUP feature, which makes the subgroup builtins
// available; wgpu 30 does not take `enable subgroups;`); matmul.wgsl is the
// fallback.

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

// One partial sum per subgroup and token.
var<workgroup> partial: array<array<f32, TN>, WG>;

@compute @workgroup_size(32)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(num_subgroups) n_sg: u32,
    @builtin(subgroup_invocation_id) sl: u32,
) {
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
        let s = subgroupAdd(acc[t]);
        if sl == 0u {
            partial[sg][t] = s;
        }
    }
    workgroupBarrier();
    if lid == 0u && row < p.rows {
        for (var t = 0u; t < nt; t++) {
            var s = 0.0;
            for (var k = 0u; k < n_sg; k++) {
                s += partial[k][t];
            }
            y[p.y_off + (t0 + t) * p.y_stride + p.y_col0 + row] = s;
        }
    }
}
