// a = act(a) * b for the gated feed-forward: op 0 is GELU (tanh form,
// written as x / (1 + e^(-2u)), u = sqrt(2/pi) x (1 + 0.044715 x^2), as the
// CPU kernels do: no cancellation for negative x), op 1 is SiLU x / (1 + e^-x).

struct GluParams {
    n: u32,
    op: u32,
    grid_x: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: GluParams;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> a: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * p.grid_x * 64u;
    if i >= p.n {
        return;
    }
    let x = a[i];
    var g: f32;
    if p.op == 0u {
        let u = 0.7978845608028654 * x * (1.0 + 0.044715 * x * x);
        g = x / (1.0 + exp(-2.0 * u));
    } else {
        g = x / (1.0 + exp(-x));
    }
    a[i] = g * b[i];
}
