// The KV cache readers of attention.wgsl without SHADER_F16: the cache is
// u32 words holding f32 values or (p.f16 != 0) f16 pairs, low half first,
// as kv_store.wgsl writes them. Element e of a cache laid out [slot][kv_dim].

@group(0) @binding(2) var<storage, read> kc: array<u32>;
@group(0) @binding(3) var<storage, read> vc: array<u32>;

fn half_at(word: u32, e: u32) -> f32 {
    let h = unpack2x16float(word);
    return select(h.x, h.y, (e & 1u) == 1u);
}

fn key_at(e: u32) -> f32 {
    if p.f16 != 0u {
        return half_at(kc[e / 2u], e);
    }
    return bitcast<f32>(kc[e]);
}

fn value_at(e: u32) -> f32 {
    if p.f16 != 0u {
        return half_at(vc[e / 2u], e);
    }
    return bitcast<f32>(vc[e]);
}
