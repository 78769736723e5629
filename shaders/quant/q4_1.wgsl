// ggml block_q4_1 (20 bytes): f16 d, f16 m, u8 qs[16]; x[j] = d * (qs[j] & 15) + m,
// x[j + 16] = d * (qs[j] >> 4) + m.
const QK: u32 = 32u;
const BLOCK_BYTES: u32 = 20u;

fn dequant32(b: u32, c: u32) {
    let d = w_f16(b);
    let m = w_f16(b + 2u);
    for (var i = 0u; i < 4u; i++) {
        let q = w_u32(b + 4u + 4u * i);
        dq[i] = d * u8x4(q & 0x0f0f0f0fu) + m;
        dq[i + 4u] = d * u8x4((q >> 4u) & 0x0f0f0f0fu) + m;
    }
}
