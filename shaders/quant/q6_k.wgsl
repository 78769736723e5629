// ggml block_q6_K (210 bytes): u8 ql[128], u8 qh[64], i8 scales[16], f16 d.
// Chunk c (half n = c / 4, quarter k = c % 4), value l < 32: low four bits
// from ql[64n + 32 (k & 1) + l] (high nibble if k >= 2), two high bits
// (2k..2k+1) from qh[32n + l]; x = d * scales[8n + 2k + l / 16] * (q - 32).
const QK: u32 = 256u;
const BLOCK_BYTES: u32 = 210u;

fn dequant32(b: u32, c: u32) {
    let n = c / 4u;
    let k = c % 4u;
    let d = w_f16(b + 208u);
    let ql = b + 64u * n + 32u * (k & 1u);
    let qh = b + 128u + 32u * n;
    let sc = b + 192u + 8u * n + 2u * k;
    for (var i = 0u; i < 8u; i++) {
        let lo = (w_u32(ql + 4u * i) >> (4u * (k >> 1u))) & 0x0f0f0f0fu;
        let hi = ((w_u32(qh + 4u * i) >> (2u * k)) & 0x03030303u) << 4u;
        dq[i] = (d * i8_at(sc + i / 4u)) * (u8x4(lo | hi) - 32.0);
    }
}
