// ggml block_q4_0 (18 bytes): f16 d, u8 qs[16]; x[j] = d * ((qs[j] & 15) - 8),
// x[j + 16] = d * ((qs[j] >> 4) - 8).
const QK: u32 = 32u;
const BLOCK_BYTES: u32 = 18u;

fn dequant32(b: u32, c: u32) {
    let d = w_f16(b);
    for (var i = 0u; i < 4u; i++) {
        let q = w_u32(b + 2u + 4u * i);
        dq[i] = d * (u8x4(q & 0x0f0f0f0fu) - 8.0);
        dq[i + 4u] = d * (u8x4((q >> 4u) & 0x0f0f0f0fu) - 8.0);
    }
}
