// Runs ggml's reference quantizers (ggml-quants.c, `quantize_row_*_ref`) and
// scalar dot products (ggml-cpu/quants.c, `ggml_vec_dot_*_generic`) for
// kernels/scripts/gen_quant_fixtures.py. Built against a llama.cpp source
// tree by kernels/scripts/gen_ggml_fixtures.sh with -ffp-contract=off (no
// FMA contraction: Rust never contracts either).
//
// usage: ggml_quantize_ref TYPE IN.f32 OUT.bin
//        ggml_quantize_ref dot WTYPE W.bin A.bin OUT.f32
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stdarg.h>

#include "ggml.h"
#include "ggml-impl.h"
#include "ggml-quants.h"

// The f16 table GGML_CPU_FP16_TO_FP32 reads (filled in main).
float ggml_table_f32_f16[1 << 16];

#define VEC_DOT(name) \
    void ggml_vec_dot_##name##_generic(int n, float * s, size_t bs, const void * vx, size_t bx, \
                                      const void * vy, size_t by, int nrc);
VEC_DOT(q4_0_q8_0)
VEC_DOT(q4_1_q8_1)
VEC_DOT(q5_0_q8_0)
VEC_DOT(q5_1_q8_1)
VEC_DOT(q8_0_q8_0)
VEC_DOT(q2_K_q8_K)
VEC_DOT(q3_K_q8_K)
VEC_DOT(q4_K_q8_K)
VEC_DOT(q5_K_q8_K)
VEC_DOT(q6_K_q8_K)
VEC_DOT(iq4_nl_q8_0)
VEC_DOT(iq4_xs_q8_K)

// ggml-quants.c needs these four from ggml.c; ggml.c itself needs the whole
// ggml-base build, so the few types used here get minimal versions.
void ggml_abort(const char * file, int line, const char * fmt, ...) {
    va_list args;
    va_start(args, fmt);
    fprintf(stderr, "%s:%d: ", file, line);
    vfprintf(stderr, fmt, args);
    va_end(args);
    abort();
}

static size_t block_values(enum ggml_type type) {
    switch (type) {
        case GGML_TYPE_Q4_0: case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_0: case GGML_TYPE_Q5_1:
        case GGML_TYPE_Q8_0: case GGML_TYPE_Q8_1: case GGML_TYPE_IQ4_NL: return 32;
        default: return 256;
    }
}

size_t ggml_type_size(enum ggml_type type) {
    switch (type) {
        case GGML_TYPE_Q4_0:   return sizeof(block_q4_0);
        case GGML_TYPE_Q4_1:   return sizeof(block_q4_1);
        case GGML_TYPE_Q5_0:   return sizeof(block_q5_0);
        case GGML_TYPE_Q5_1:   return sizeof(block_q5_1);
        case GGML_TYPE_Q8_0:   return sizeof(block_q8_0);
        case GGML_TYPE_Q2_K:   return sizeof(block_q2_K);
        case GGML_TYPE_Q3_K:   return sizeof(block_q3_K);
        case GGML_TYPE_Q4_K:   return sizeof(block_q4_K);
        case GGML_TYPE_Q5_K:   return sizeof(block_q5_K);
        case GGML_TYPE_Q6_K:   return sizeof(block_q6_K);
        case GGML_TYPE_Q8_K:   return sizeof(block_q8_K);
        case GGML_TYPE_Q8_1:   return sizeof(block_q8_1);
        case GGML_TYPE_IQ4_NL: return sizeof(block_iq4_nl);
        case GGML_TYPE_IQ4_XS: return sizeof(block_iq4_xs);
        default: ggml_abort(__FILE__, __LINE__, "type %d", (int) type);
    }
}

size_t ggml_row_size(enum ggml_type type, int64_t ne) {
    return ggml_type_size(type) * ne / block_values(type);
}

const char * ggml_type_name(enum ggml_type type) {
    (void) type;
    return "?";
}

static enum ggml_type parse_type(const char * t) {
    static const struct { const char * name; enum ggml_type type; } types[] = {
        {"q4_0", GGML_TYPE_Q4_0}, {"q4_1", GGML_TYPE_Q4_1}, {"q5_0", GGML_TYPE_Q5_0},
        {"q5_1", GGML_TYPE_Q5_1}, {"q8_0", GGML_TYPE_Q8_0}, {"q8_1", GGML_TYPE_Q8_1},
        {"q2_K", GGML_TYPE_Q2_K}, {"q3_K", GGML_TYPE_Q3_K}, {"q4_K", GGML_TYPE_Q4_K},
        {"q5_K", GGML_TYPE_Q5_K}, {"q6_K", GGML_TYPE_Q6_K}, {"q8_K", GGML_TYPE_Q8_K},
        {"iq4_nl", GGML_TYPE_IQ4_NL}, {"iq4_xs", GGML_TYPE_IQ4_XS},
    };
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); ++i) {
        if (!strcmp(t, types[i].name)) return types[i].type;
    }
    fprintf(stderr, "unknown type %s\n", t);
    exit(2);
}

static void * read_file(const char * path, long * bytes) {
    FILE * f = fopen(path, "rb");
    if (!f) { perror(path); exit(1); }
    fseek(f, 0, SEEK_END);
    *bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    void * p = malloc(*bytes);
    if (fread(p, 1, *bytes, f) != (size_t) *bytes) { perror(path); exit(1); }
    fclose(f);
    return p;
}

static void write_file(const char * path, const void * p, size_t bytes) {
    FILE * g = fopen(path, "wb");
    if (!g || fwrite(p, 1, bytes, g) != bytes) { perror(path); exit(1); }
    fclose(g);
}

static int dot(char ** argv) {
    enum ggml_type wt = parse_type(argv[2]);
    long wbytes, abytes;
    const void * w = read_file(argv[3], &wbytes);
    const void * a = read_file(argv[4], &abytes);
    int n = (int) (wbytes / ggml_type_size(wt) * block_values(wt));
    float s = 0;
    switch (wt) {
        case GGML_TYPE_Q4_0:   ggml_vec_dot_q4_0_q8_0_generic(n, &s, 0, w, 0, a, 0, 1); break;
        case GGML_TYPE_Q4_1:   ggml_vec_dot_q4_1_q8_1_generic(n, &s, 0, w, 0, a, 0, 1); break;
        case GGML_TYPE_Q5_0:   ggml_vec_dot_q5_0_q8_0_generic(n, &s, 0, w, 0, a, 0, 1); break;
        case GGML_TYPE_Q5_1:   ggml_vec_dot_q5_1_q8_1_generic(n, &s, 0, w, 0, a, 0, 1); break;
        case GGML_TYPE_Q8_0:   ggml_vec_dot_q8_0_q8_0_generic(n, &s, 0, w, 0, a, 0, 1); break;
        case GGML_TYPE_Q2_K:   ggml_vec_dot_q2_K_q8_K_generic(n, &s, 0, w, 0, a, 0, 1); break;
        case GGML_TYPE_Q3_K:   ggml_vec_dot_q3_K_q8_K_generic(n, &s, 0, w, 0, a, 0, 1); break;
        case GGML_TYPE_Q4_K:   ggml_vec_dot_q4_K_q8_K_generic(n, &s, 0, w, 0, a, 0, 1); break;
        case GGML_TYPE_Q5_K:   ggml_vec_dot_q5_K_q8_K_generic(n, &s, 0, w, 0, a, 0, 1); break;
        case GGML_TYPE_Q6_K:   ggml_vec_dot_q6_K_q8_K_generic(n, &s, 0, w, 0, a, 0, 1); break;
        case GGML_TYPE_IQ4_NL: ggml_vec_dot_iq4_nl_q8_0_generic(n, &s, 0, w, 0, a, 0, 1); break;
        case GGML_TYPE_IQ4_XS: ggml_vec_dot_iq4_xs_q8_K_generic(n, &s, 0, w, 0, a, 0, 1); break;
        default: fprintf(stderr, "no vec_dot for %s\n", argv[2]); return 2;
    }
    (void) abytes;
    write_file(argv[5], &s, sizeof(s));
    return 0;
}

int main(int argc, char ** argv) {
    for (int i = 0; i < (1 << 16); ++i) {
        ggml_table_f32_f16[i] = ggml_compute_fp16_to_fp32((ggml_fp16_t) i);
    }
    if (argc == 6 && !strcmp(argv[1], "dot")) {
        return dot(argv);
    }
    if (argc != 4) {
        fprintf(stderr, "usage: %s TYPE IN.f32 OUT.bin | dot WTYPE W.bin A.bin OUT.f32\n", argv[0]);
        return 2;
    }
    long bytes;
    float * x = read_file(argv[2], &bytes);
    int64_t n = bytes / 4;
    enum ggml_type type = parse_type(argv[1]);
    size_t out_bytes = ggml_row_size(type, n);
    void * y = calloc(1, out_bytes);
    switch (type) {
        case GGML_TYPE_Q8_0:   quantize_row_q8_0_ref(x, y, n); break;
        case GGML_TYPE_Q8_1:   quantize_row_q8_1_ref(x, y, n); break;
        case GGML_TYPE_Q2_K:   quantize_row_q2_K_ref(x, y, n); break;
        case GGML_TYPE_Q3_K:   quantize_row_q3_K_ref(x, y, n); break;
        case GGML_TYPE_Q4_K:   quantize_row_q4_K_ref(x, y, n); break;
        case GGML_TYPE_Q5_K:   quantize_row_q5_K_ref(x, y, n); break;
        case GGML_TYPE_Q6_K:   quantize_row_q6_K_ref(x, y, n); break;
        case GGML_TYPE_Q8_K:   quantize_row_q8_K_ref(x, y, n); break;
        case GGML_TYPE_IQ4_NL: quantize_row_iq4_nl_ref(x, y, n); break;
        case GGML_TYPE_IQ4_XS: quantize_row_iq4_xs_ref(x, y, n); break;
        default: fprintf(stderr, "no reference quantizer wired for %s\n", argv[1]); return 2;
    }
    write_file(argv[3], y, out_bytes);
    return 0;
}
