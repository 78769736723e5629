// Attention of one sequence's query rows over its KV cache, online softmax
// (flash-attention style) over tiles of 64 keys. Workgroup (t, h): query row
// q_row0 + t, head h, kv head h / (n_head / n_head_kv). A key in slot j at
// position slot_pos[j] is visible when causal => pk <= p and, with a window,
// |p - pk| < window; its score scale * q.k is soft-capped to
// cap * tanh(s / cap) when cap > 0. A query that sees no key gets zeros.
// head_dim <= 512. The cache bindings (2, 3) and their readers key_at and
// value_at come from a prelude: attention_kv.wgsl (u32 words holding f32 or
// f16 pairs) or attention_kv_f16.wgsl (native f16, SHADER_F16 adapters).
// Either way products and sums are f32.

struct AttnParams {
    n_tok: u32,
    q_row0: u32,
    n_head: u32,
    n_head_kv: u32,
    head_dim: u32,
    n_kv: u32,
    causal: u32,
    window: u32,
    scale: f32,
    softcap: f32,
    f16: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: AttnParams;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(4) var<storage, read> slot_pos: array<i32>;
@group(0) @binding(5) var<storage, read> q_pos: array<i32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

const WG: u32 = 64u;
const MAX_DIMS: u32 = 8u;

var<workgroup> qs: array<f32, 512>;
var<workgroup> sc: array<f32, WG>;

fn visible(qp: i32, kp: i32) -> bool {
    // Positions are non-negative i32, so the difference cannot overflow.
    let d = qp - kp;
    if p.causal != 0u && d < 0 {
        return false;
    }
    if p.window != 0u {
        return u32(abs(d)) < p.window;
    }
    return true;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = wg.x;
    let h = wg.y;
    let hd = p.head_dim;
    let kv_dim = p.n_head_kv * hd;
    let kvh = h / (p.n_head / p.n_head_kv);
    let qrow = (p.q_row0 + t) * p.n_head * hd + h * hd;
    for (var d = lid; d < hd; d += WG) {
        qs[d] = q[qrow + d];
    }
    workgroupBarrier();
    let qp = q_pos[t];
    var m = -1.0e30;
    var any = false;
    var l = 0.0;
    var acc: array<f32, MAX_DIMS>;
    for (var tile = 0u; tile < p.n_kv; tile += WG) {
        let j = tile + lid;
        var s = -1.0e30;
        var vis = false;
        if j < p.n_kv && visible(qp, slot_pos[j]) {
            var dotp = 0.0;
            let kb = j * kv_dim + kvh * hd;
            for (var d = 0u; d < hd; d++) {
                dotp += qs[d] * key_at(kb + d);
            }
            s = p.scale * dotp;
            if p.softcap > 0.0 {
                s = p.softcap * tanh(s / p.softcap);
            }
            vis = true;
        }
        sc[lid] = select(-3.0e38, s, vis);
        workgroupBarrier();
        let n = min(WG, p.n_kv - tile);
        var mt = -3.0e38;
        for (var jj = 0u; jj < n; jj++) {
            mt = max(mt, sc[jj]);
        }
        if mt > -1.0e38 {
            var m_new = mt;
            if any {
                m_new = max(m, mt);
                let alpha = exp(m - m_new);
                l *= alpha;
                for (var k = 0u; k < MAX_DIMS; k++) {
                    acc[k] *= alpha;
                }
            }
            any = true;
            m = m_new;
            for (var jj = 0u; jj < n; jj++) {
                if sc[jj] > -1.0e38 {
                    let pr = exp(sc[jj] - m);
                    l += pr;
                    let vb = (tile + jj) * kv_dim + kvh * hd;
                    for (var k = 0u; k < MAX_DIMS; k++) {
                        let d = lid + k * WG;
                        if d < hd {
                            acc[k] += pr * value_at(vb + d);
                        }
                    }
                }
            }
        }
        workgroupBarrier();
    }
    var inv = 0.0;
    if l > 0.0 {
        inv = 1.0 / l;
    }
    for (var k = 0u; k < MAX_DIMS; k++) {
        let d = lid + k * WG;
        if d < hd {
            out[qrow + d] = acc[k] * inv;
        }
    }
}
