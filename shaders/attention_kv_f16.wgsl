enable f16;

// The KV cache readers of attention.wgsl with SHADER_F16: an f16 cache
// (kv_store_f16.wgsl writes it) bound as array<f16>, each element loaded
// natively and widened to f32, so that scores and the weighted sum of
// values accumulate in f32 as in the fallback (attention_kv.wgsl).
// Element e of a cache laid out [slot][kv_dim].

@group(0) @binding(2) var<storage, read> kc: array<f16>;
@group(0) @binding(3) var<storage, read> vc: array<f16>;

fn key_at(e: u32) -> f32 {
    return f32(kc[e]);
}

fn value_at(e: u32) -> f32 {
    return f32(vc[e]);
}
