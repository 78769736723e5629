// ggml block_q2_K (84 bytes): u8 scales[16] (low nibble scale, high nibble
// min), u8 qs[64], f16 d, f16 dmin. Chunk c (half n = c / 4, j = c % 4),
// value l < 32: q = (qs[32n + l] >> 2j) & 3, sub-block 8n + 2j + l / 16;
// x = d * (sc & 15) * q - dmin * (sc >> 4).
const QK: u32 = 256u;
const BLOCK_BYTES: u32 = 84u;

fn dequant32(b: u32, c: u32) {
    let n = c / 4u;
    let j = c % 4u;
    let d = w_f16(b + 80u);
    let dmin = w_f16(b + 82u);
    for (var i = 0u; i < 8u; i++) {
        let sc = w_u8(b + 8u * n + 2u * j + i / 4u);
        let q = (w_u32(b + 16u + 32u * n + 4u * i) >> (2u * j)) & 0x03030303u;
        dq[i] = (d * f32(sc & 15u)) * u8x4(q) - dmin * f32(sc >> 4u);
    }
}
