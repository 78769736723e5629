// ggml block_q5_1 (24 bytes): f16 d, f16 m, u32 qh, u8 qs[16]; as Q5_0 with
// x = d * q + m and no offset.
const QK: u32 = 32u;
const BLOCK_BYTES: u32 = 24u;

fn spread4(qh: u32, j: u32) -> u32 {
    let b = qh >> j;
    return (b & 1u) | ((b & 2u) << 7u) | ((b & 4u) << 14u) | ((b & 8u) << 21u);
}

fn dequant32(b: u32, c: u32) {
    let d = w_f16(b);
    let m = w_f16(b + 2u);
    let qh = w_u32(b + 4u);
    for (var i = 0u; i < 4u; i++) {
        let q = w_u32(b + 8u + 4u * i);
        dq[i] = d * u8x4((q & 0x0f0f0f0fu) | (spread4(qh, 4u * i) << 4u)) + m;
        dq[i + 4u] = d * u8x4(((q >> 4u) & 0x0f0f0f0fu) | (spread4(qh, 16u + 4u * i) << 4u)) + m;
    }
}
