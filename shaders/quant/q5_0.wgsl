// ggml block_q5_0 (22 bytes): f16 d, u32 qh, u8 qs[16]; bit j of qh is the
// fifth bit of x[j]: x[j] = d * ((qs[j] & 15 | bit j << 4) - 16),
// x[j + 16] = d * ((qs[j] >> 4 | bit (j + 16) << 4) - 16).
const QK: u32 = 32u;
const BLOCK_BYTES: u32 = 22u;

// Bits j..j+3 of qh, one per byte.
fn spread4(qh: u32, j: u32) -> u32 {
    let b = qh >> j;
    return (b & 1u) | ((b & 2u) << 7u) | ((b & 4u) << 14u) | ((b & 8u) << 21u);
}

fn dequant32(b: u32, c: u32) {
    let d = w_f16(b);
    let qh = w_u32(b + 2u);
    for (var i = 0u; i < 4u; i++) {
        let q = w_u32(b + 6u + 4u * i);
        dq[i] = d * (u8x4((q & 0x0f0f0f0fu) | (spread4(qh, 4u * i) << 4u)) - 16.0);
        dq[i + 4u] = d * (u8x4(((q >> 4u) & 0x0f0f0f0fu) | (spread4(qh, 16u + 4u * i) << 4u)) - 16.0);
    }
}
