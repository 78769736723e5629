// Stores rows of keys or values into a KV cache ring: for each entry i of
// `slots` (batch row, slot, position), row `row` of src goes to slot `slot`
// of dst, as f32 or as f16 pairs packed in u32 (kv_dim even); with
// write_pos, slot_pos[slot] = position. One thread per u32 written.

struct KvStoreParams {
    kv_dim: u32,
    n: u32,
    f16: u32,
    write_pos: u32,
    grid_x: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: KvStoreParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> slots: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<u32>;
@group(0) @binding(4) var<storage, read_write> slot_pos: array<i32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    var words = p.kv_dim;
    if p.f16 != 0u {
        words = p.kv_dim / 2u;
    }
    let idx = gid.x + gid.y * p.grid_x * 64u;
    let i = idx / words;
    if i >= p.n {
        return;
    }
    let e = idx % words;
    let row = slots[3u * i];
    let slot = slots[3u * i + 1u];
    if p.f16 != 0u {
        let s = row * p.kv_dim + 2u * e;
        dst[slot * words + e] = pack2x16float(vec2<f32>(src[s], src[s + 1u]));
    } else {
        dst[slot * words + e] = bitcast<u32>(src[row * p.kv_dim + e]);
    }
    if p.write_pos != 0u && e == 0u {
        slot_pos[slot] = bitcast<i32>(slots[3u * i + 2u]);
    }
}
