// Prelude of the kernels that read GGUF blocks as stored: the weight bytes
// as little-endian u32 words (binding 1) and readers of bytes, f16 and
// unaligned u32 at any byte offset. Block sizes such as Q8_0's 34 bytes or
// Q6_K's 210 are not multiples of 4, so a block may start at any byte; the
// readers extract from the enclosing words instead of re-packing at upload.
// Each quant file (quant/*.wgsl) defines QK, BLOCK_BYTES and
// `dequant32(block, c)`, which writes values 32c..32c+32 of a block to `dq`.

@group(0) @binding(1) var<storage, read> w: array<u32>;

// 32 dequantized weights, as written by `dequant32`.
var<private> dq: array<vec4<f32>, 8>;

fn w_u8(off: u32) -> u32 {
    return (w[off >> 2u] >> ((off & 3u) * 8u)) & 0xffu;
}

// A little-endian u16 at an even offset.
fn w_f16(off: u32) -> f32 {
    return unpack2x16float((w[off >> 2u] >> ((off & 2u) * 8u)) & 0xffffu).x;
}

// Four bytes at any offset, little-endian.
fn w_u32(off: u32) -> u32 {
    let s = (off & 3u) * 8u;
    let lo = w[off >> 2u];
    if s == 0u {
        return lo;
    }
    return (lo >> s) | (w[(off >> 2u) + 1u] << (32u - s));
}

// The four bytes of `q` as unsigned values.
fn u8x4(q: u32) -> vec4<f32> {
    return vec4<f32>(f32(q & 0xffu), f32((q >> 8u) & 0xffu), f32((q >> 16u) & 0xffu), f32(q >> 24u));
}

// The four bytes of `q` as signed values.
fn i8x4(q: u32) -> vec4<f32> {
    let s = bitcast<i32>(q);
    return vec4<f32>(f32((s << 24u) >> 24u), f32((s << 16u) >> 24u), f32((s << 8u) >> 24u), f32(s >> 24u));
}

fn i8_at(off: u32) -> f32 {
    return f32((bitcast<i32>(w_u8(off)) << 24u) >> 24u);
}
