// out[pairs[2i]] = w.row(pairs[2i + 1]) * scale: embedding lookup of the
// rows held by one weight part. Appended to bytes.wgsl and one quant/*.wgsl.
// One thread per 32-value chunk of an output row.

struct EmbedParams {
    cols: u32,
    n: u32,
    row_bytes: u32,
    scale: f32,
    grid_x: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: EmbedParams;
@group(0) @binding(2) var<storage, read> pairs: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let per_row = p.cols / 32u;
    let idx = gid.x + gid.y * p.grid_x * 64u;
    let i = idx / per_row;
    if i >= p.n {
        return;
    }
    let c = idx % per_row;
    let per_block = QK / 32u;
    let out_row = pairs[2u * i];
    let row = pairs[2u * i + 1u];
    dequant32(row * p.row_bytes + (c / per_block) * BLOCK_BYTES, c % per_block);
    let o = (out_row * p.cols + c * 32u) / 4u;
    for (var k = 0u; k < 8u; k++) {
        y[o + k] = dq[k] * p.scale;
    }
}
