// RMSNorm in place: each of `rows` rows of n values of y becomes
// y * (1 / sqrt(mean(y^2) + eps)) * w, as ggml rounds it (the scale in f32,
// then y * scale, then times w). Per-head norm is the same over rows of one
// head. One workgroup per row; the grid's x * y cover the rows.

struct NormParams {
    rows: u32,
    n: u32,
    eps: f32,
    grid_x: u32,
}

@group(0) @binding(0) var<uniform> p: NormParams;
@group(0) @binding(1) var<storage, read> wt: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

const WG: u32 = 64u;
var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wg.x + wg.y * p.grid_x;
    let live = row < p.rows;
    let base = row * p.n;
    var s = 0.0;
    if live {
        for (var i = lid; i < p.n; i += WG) {
            let v = y[base + i];
            s += v * v;
        }
    }
    red[lid] = s;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k >>= 1u) {
        if lid < k {
            red[lid] += red[lid + k];
        }
        workgroupBarrier();
    }
    if live {
        let scale = 1.0 / sqrt(red[0] / f32(p.n) + p.eps);
        for (var i = lid; i < p.n; i += WG) {
            y[base + i] = (y[base + i] * scale) * wt[i];
        }
    }
}
