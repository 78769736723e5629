// RoPE in place on rows of n_heads heads of head_dim: the first n_rot dims
// of each head rotate in pairs (i, i + n_rot/2) for NeoX, (2i, 2i+1)
// otherwise. cos/sin of each (token, pair) come in `cs`, computed in f64 on
// the host as the CPU kernels do (f32 angles would lose ~1e-4 at position
// 1000). One thread per (token, head, pair).

struct RopeParams {
    n_tok: u32,
    n_heads: u32,
    head_dim: u32,
    n_rot: u32,
    neox: u32,
    grid_x: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: RopeParams;
@group(0) @binding(1) var<storage, read> cs: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let half = p.n_rot / 2u;
    let idx = gid.x + gid.y * p.grid_x * 64u;
    let i = idx % half;
    let th = idx / half;
    let h = th % p.n_heads;
    let t = th / p.n_heads;
    if t >= p.n_tok {
        return;
    }
    let c = cs[t * half + i];
    let base = (t * p.n_heads + h) * p.head_dim;
    var i0 = base + 2u * i;
    var i1 = i0 + 1u;
    if p.neox != 0u {
        i0 = base + i;
        i1 = i0 + half;
    }
    let x0 = y[i0];
    let x1 = y[i1];
    y[i0] = x0 * c.x - x1 * c.y;
    y[i1] = x0 * c.y + x1 * c.x;
}
