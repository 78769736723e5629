// attention.wgsl's attention (same parameters, bindings and cache readers)
// with one thread per (QN query rows, head) and no workgroup memory or
// barriers: the shape for a CPU adapter such as lavapipe, where storage
// reads are made lane by lane and private arrays are cheap, so each key and
// value element read serves QN queries. Keys are taken in tiles of KT: the
// scores of a tile first, then one rescale of the running sums per tile
// (online softmax). Grid: x covers the query rows in workgroups of
// 8 * QN, y the heads.

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

// Query rows per thread (ATTN_ROWS_QUERIES in shaders.rs).
const QN: u32 = 2u;
const KT: u32 = 16u;
const MAX_HD: u32 = 512u;

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

@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t0 = (wg.x * 8u + lid) * QN;
    if t0 >= p.n_tok {
        return;
    }
    let nq = min(QN, p.n_tok - t0);
    let h = wg.y;
    let hd = p.head_dim;
    let kv_dim = p.n_head_kv * hd;
    let kvh = h / (p.n_head / p.n_head_kv);
    var qv: array<array<f32, MAX_HD>, QN>;
    var acc: array<array<f32, MAX_HD>, QN>;
    var qp: array<i32, QN>;
    var m: array<f32, QN>;
    var l: array<f32, QN>;
    for (var r = 0u; r < QN; r++) {
        // Rows past the end repeat the last one; they are not written.
        let t = t0 + min(r, nq - 1u);
        let qrow = (p.q_row0 + t) * p.n_head * hd + h * hd;
        for (var d = 0u; d < hd; d++) {
            qv[r][d] = q[qrow + d];
        }
        qp[r] = q_pos[t];
        m[r] = -3.0e38;
    }
    var sc: array<array<f32, KT>, QN>;
    for (var tile = 0u; tile < p.n_kv; tile += KT) {
        let n = min(KT, p.n_kv - tile);
        // Scores of the tile; -3e38 marks a key a query does not see.
        var seen = false;
        for (var jj = 0u; jj < n; jj++) {
            let j = tile + jj;
            let kp = slot_pos[j];
            var vis: array<bool, QN>;
            var any = false;
            for (var r = 0u; r < QN; r++) {
                vis[r] = visible(qp[r], kp);
                any = any || vis[r];
            }
            var dotp: array<f32, QN>;
            if any {
                let kb = j * kv_dim + kvh * hd;
                for (var d = 0u; d < hd; d++) {
                    let k = key_at(kb + d);
                    for (var r = 0u; r < QN; r++) {
                        dotp[r] += qv[r][d] * k;
                    }
                }
            }
            for (var r = 0u; r < QN; r++) {
                var s = p.scale * dotp[r];
                if p.softcap > 0.0 {
                    s = p.softcap * tanh(s / p.softcap);
                }
                sc[r][jj] = select(-3.0e38, s, vis[r]);
            }
            seen = seen || any;
        }
        if !seen {
            continue;
        }
        // One rescale per tile, then the tile's weights.
        for (var r = 0u; r < QN; r++) {
            var mt = m[r];
            for (var jj = 0u; jj < n; jj++) {
                mt = max(mt, sc[r][jj]);
            }
            if mt > m[r] {
                let alpha = exp(m[r] - mt);
                l[r] *= alpha;
                for (var d = 0u; d < hd; d++) {
                    acc[r][d] *= alpha;
                }
                m[r] = mt;
            }
            for (var jj = 0u; jj < n; jj++) {
                var pr = 0.0;
                if sc[r][jj] > -1.0e38 {
                    pr = exp(sc[r][jj] - m[r]);
                }
                sc[r][jj] = pr;
                l[r] += pr;
            }
        }
        for (var jj = 0u; jj < n; jj++) {
            var any = false;
            for (var r = 0u; r < QN; r++) {
                any = any || sc[r][jj] > 0.0;
            }
            if !any {
                continue;
            }
            let vb = (tile + jj) * kv_dim + kvh * hd;
            for (var d = 0u; d < hd; d++) {
                let v = value_at(vb + d);
                for (var r = 0u; r < QN; r++) {
                    acc[r][d] += sc[r][jj] * v;
                }
            }
        }
    }
    for (var r = 0u; r < nq; r++) {
        var inv = 0.0;
        if l[r] > 0.0 {
            inv = 1.0 / l[r];
        }
        let orow = (p.q_row0 + t0 + r) * p.n_head * hd + h * hd;
        for (var d = 0u; d < hd; d++) {
            out[orow + d] = acc[r][d] * inv;
        }
    }
}
