enable f16;

// kv_store.wgsl for an f16 cache on SHADER_F16 adapters: the cache is bound
// as array<vec2<f16>> and each thread converts two f32 values with a native
// f32 -> f16 conversion (where kv_store.wgsl packs them with pack2x16float).
// Same parameters and dispatch: one thread per pair, kv_dim even; with
// write_pos, slot_pos[slot] = position.

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
@group(0) @binding(3) var<storage, read_write> dst: array<vec2<f16>>;
@group(0) @binding(4) var<storage, read_write> slot_pos: array<i32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let pairs = p.kv_dim / 2u;
    let idx = gid.x + gid.y * p.grid_x * 64u;
    let i = idx / pairs;
    if i >= p.n {
        return;
    }
    let e = idx % pairs;
    let row = slots[3u * i];
    let slot = slots[3u * i + 1u];
    let s = row * p.kv_dim + 2u * e;
    dst[slot * pairs + e] = vec2<f16>(vec2<f32>(src[s], src[s + 1u]));
    if p.write_pos != 0u && e == 0u {
        slot_pos[slot] = bitcast<i32>(slots[3u * i + 2u]);
    }
}
