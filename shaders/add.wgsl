// a[i] += b[i % b_len]: residual add (b_len = n) and bias add (b_len = row
// width, b broadcast over rows).

struct AddParams {
    n: u32,
    b_len: u32,
    grid_x: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: AddParams;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> a: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * p.grid_x * 64u;
    if i >= p.n {
        return;
    }
    a[i] += b[i % p.b_len];
}
