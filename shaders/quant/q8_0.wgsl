// ggml block_q8_0 (34 bytes): f16 d, i8 qs[32]; x = d * q.
const QK: u32 = 32u;
const BLOCK_BYTES: u32 = 34u;

fn dequant32(b: u32, c: u32) {
    let d = w_f16(b);
    for (var i = 0u; i < 8u; i++) {
        dq[i] = d * i8x4(w_u32(b + 2u + 4u * i));
    }
}
