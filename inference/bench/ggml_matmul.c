// llama.cpp's own CPU matmul (ggml_mul_mat on a quantised weight, f32 activations quantised on
// the fly, exactly what a llama.cpp forward pass runs) timed on the shapes of
// inference/benches/matmul.rs, printing the same TSV columns.
//
// usage: ggml_matmul TYPE ROWS COLS BATCH THREADS [MIN_TIME_S] [repack]
//   TYPE: f32 q8_0 q4_0 q4_1 q5_0 q5_1 q4_k q5_k q6_k
//   repack: put the weight in the CPU backend's "extra" buffer type, as llama.cpp's model
//           loader does: types with a repacked layout for this CPU (e.g. Q4_0 and Q4_K as
//           8-row interleaved blocks on AVX2) are converted once at load and use those kernels;
//           the row is labelled "ggml-repack". Without it the weight sits in a plain buffer.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ggml.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const struct { const char *name; enum ggml_type type; } TYPES[] = {
    {"f32", GGML_TYPE_F32},   {"q8_0", GGML_TYPE_Q8_0}, {"q4_0", GGML_TYPE_Q4_0},
    {"q4_1", GGML_TYPE_Q4_1}, {"q5_0", GGML_TYPE_Q5_0}, {"q5_1", GGML_TYPE_Q5_1},
    {"q4_k", GGML_TYPE_Q4_K}, {"q5_k", GGML_TYPE_Q5_K}, {"q6_k", GGML_TYPE_Q6_K},
};

int main(int argc, char **argv) {
    if (argc < 6 || argc > 8) {
        fprintf(stderr, "usage: %s TYPE ROWS COLS BATCH THREADS [MIN_TIME_S] [repack]\n", argv[0]);
        return 2;
    }
    enum ggml_type type = GGML_TYPE_COUNT;
    for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++)
        if (!strcmp(argv[1], TYPES[i].name)) type = TYPES[i].type;
    if (type == GGML_TYPE_COUNT) { fprintf(stderr, "unknown type %s\n", argv[1]); return 2; }
    int64_t rows = atoll(argv[2]), cols = atoll(argv[3]), batch = atoll(argv[4]);
    int threads = atoi(argv[5]);
    double min_time = argc >= 7 ? atof(argv[6]) : 0.2;
    int repack = argc == 8 && !strcmp(argv[7], "repack");

    // Weights in their own context and buffer (plain CPU or the repacking extra type).
    ggml_backend_t be = ggml_backend_cpu_init();
    ggml_backend_cpu_set_n_threads(be, threads);
    ggml_backend_buffer_type_t wbuft = ggml_backend_cpu_buffer_type();
    const char *label = "ggml";
    if (repack) {
        ggml_backend_reg_t reg = ggml_backend_cpu_reg();
        ggml_backend_dev_t dev = ggml_backend_reg_dev_get(reg, 0);
        ggml_backend_dev_get_extra_bufts_t extra = (ggml_backend_dev_get_extra_bufts_t)
            ggml_backend_reg_get_proc_address(reg, "ggml_backend_dev_get_extra_bufts");
        ggml_backend_buffer_type_t *bufts = extra ? extra(dev) : NULL;
        for (; bufts && *bufts; bufts++) {
            if (strstr(ggml_backend_buft_name(*bufts), "REPACK")) { wbuft = *bufts; label = "ggml-repack"; }
        }
        if (wbuft == ggml_backend_cpu_buffer_type()) { fprintf(stderr, "no repack buffer type\n"); return 1; }
    }
    struct ggml_init_params wp = {.mem_size = 4 * ggml_tensor_overhead(), .mem_buffer = NULL, .no_alloc = true};
    struct ggml_context *wctx = ggml_init(wp);
    struct ggml_tensor *w = ggml_new_tensor_2d(wctx, type, cols, rows);
    ggml_backend_buffer_t wbuf = ggml_backend_alloc_ctx_tensors_from_buft(wctx, wbuft);
    if (!wbuf) { fprintf(stderr, "weight buffer allocation failed\n"); return 1; }

    uint64_t s = 0x243f6a8885a308d3ull;
    float *wf = malloc(sizeof(float) * rows * cols);
    for (int64_t i = 0; i < rows * cols; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        wf[i] = ((s >> 40) / (float)(1 << 23)) - 1.0f;
    }
    size_t wbytes = ggml_row_size(type, cols) * rows;
    void *wq = malloc(wbytes);
    ggml_quantize_chunk(type, wf, wq, 0, rows, cols, NULL);
    ggml_backend_tensor_set(w, wq, 0, wbytes);  // the repack buffer converts here
    free(wq);

    struct ggml_init_params ip = {.mem_size = 16 * ggml_tensor_overhead() + ggml_graph_overhead(),
                                  .mem_buffer = NULL, .no_alloc = true};
    struct ggml_context *ctx = ggml_init(ip);
    struct ggml_tensor *x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, cols, batch);
    struct ggml_tensor *y = ggml_mul_mat(ctx, w, x);
    ggml_backend_buffer_t abuf = ggml_backend_alloc_ctx_tensors(ctx, be);
    float *xf = malloc(sizeof(float) * cols * batch);
    for (int64_t i = 0; i < cols * batch; i++) xf[i] = wf[i % (rows * cols)] * 0.5f;
    ggml_backend_tensor_set(x, xf, 0, sizeof(float) * cols * batch);
    free(wf);
    free(xf);

    struct ggml_cgraph *gf = ggml_new_graph(ctx);
    ggml_build_forward_expand(gf, y);
    ggml_backend_graph_compute(be, gf); // warm-up
    // Minimum per-call time: the machine is shared, and the fastest call is the one nobody
    // preempted (same rule as inference/benches/matmul.rs).
    double best = 1e30, t_start = now_s();
    for (int iters = 0; iters < 5 || now_s() - t_start < min_time; iters++) {
        double t0 = now_s();
        ggml_backend_graph_compute(be, gf);
        double t = now_s() - t0;
        if (t < best) best = t;
    }
    double flop = 2.0 * rows * cols * batch;
    printf("llama.cpp\t%s\t%s\t%lld\t%lld\t%lld\t%d\t%.2f\t%.2f\t%.2f\n", label, argv[1], (long long)rows,
           (long long)cols, (long long)batch, threads, best * 1e6, flop / best * 1e-9, wbytes / best * 1e-9);
    ggml_backend_buffer_free(abuf);
    ggml_backend_buffer_free(wbuf);
    ggml_free(ctx);
    ggml_free(wctx);
    ggml_backend_free(be);
    return 0;
}
