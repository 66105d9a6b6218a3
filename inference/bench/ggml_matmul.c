// llama.cpp's own CPU matmul (ggml_mul_mat on a quantised weight, f32 activations quantised on
// the fly, exactly what a llama.cpp forward pass runs) timed on the shapes of
// inference/benches/matmul.rs, printing the same TSV columns.
//
// usage: ggml_matmul TYPE ROWS COLS BATCH THREADS [MIN_TIME_S]   (TYPE: f32 q8_0 q4_0 q4_1)
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ggml.h"
#include "ggml-cpu.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: %s TYPE ROWS COLS BATCH THREADS [MIN_TIME_S]\n", argv[0]);
        return 2;
    }
    enum ggml_type type;
    if (!strcmp(argv[1], "f32")) type = GGML_TYPE_F32;
    else if (!strcmp(argv[1], "q8_0")) type = GGML_TYPE_Q8_0;
    else if (!strcmp(argv[1], "q4_0")) type = GGML_TYPE_Q4_0;
    else if (!strcmp(argv[1], "q4_1")) type = GGML_TYPE_Q4_1;
    else { fprintf(stderr, "unknown type %s\n", argv[1]); return 2; }
    int64_t rows = atoll(argv[2]), cols = atoll(argv[3]), batch = atoll(argv[4]);
    int threads = atoi(argv[5]);
    double min_time = argc == 7 ? atof(argv[6]) : 0.2;

    size_t wbytes = ggml_row_size(type, cols) * rows;
    struct ggml_init_params ip = {
        .mem_size = wbytes + (size_t)(cols + rows) * batch * 4 + 16 * 1024 * 1024,
        .mem_buffer = NULL,
        .no_alloc = false,
    };
    struct ggml_context *ctx = ggml_init(ip);
    struct ggml_tensor *w = ggml_new_tensor_2d(ctx, type, cols, rows);
    struct ggml_tensor *x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, cols, batch);

    uint64_t s = 0x243f6a8885a308d3ull;
    float *wf = malloc(sizeof(float) * rows * cols);
    for (int64_t i = 0; i < rows * cols; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        wf[i] = ((s >> 40) / (float)(1 << 23)) - 1.0f;
    }
    ggml_quantize_chunk(type, wf, w->data, 0, rows, cols, NULL);
    float *xf = (float *)x->data;
    for (int64_t i = 0; i < cols * batch; i++) xf[i] = wf[i % (rows * cols)] * 0.5f;
    free(wf);

    struct ggml_tensor *y = ggml_mul_mat(ctx, w, x);
    struct ggml_cgraph *gf = ggml_new_graph(ctx);
    ggml_build_forward_expand(gf, y);

    struct ggml_threadpool_params tpp = ggml_threadpool_params_default(threads);
    struct ggml_threadpool *tp = ggml_threadpool_new(&tpp);
    struct ggml_cplan plan = ggml_graph_plan(gf, threads, tp);
    plan.work_data = plan.work_size ? malloc(plan.work_size) : NULL;

    ggml_graph_compute(gf, &plan); // warm-up
    // Minimum per-call time: the machine is shared, and the fastest call is the one nobody
    // preempted (same rule as inference/benches/matmul.rs).
    double best = 1e30, t_start = now_s();
    for (int iters = 0; iters < 5 || now_s() - t_start < min_time; iters++) {
        double t0 = now_s();
        ggml_graph_compute(gf, &plan);
        double t = now_s() - t0;
        if (t < best) best = t;
    }
    double flop = 2.0 * rows * cols * batch;
    printf("llama.cpp\tggml\t%s\t%lld\t%lld\t%lld\t%d\t%.2f\t%.2f\t%.2f\n", argv[1], (long long)rows,
           (long long)cols, (long long)batch, threads, best * 1e6, flop / best * 1e-9, wbytes / best * 1e-9);
    ggml_threadpool_free(tp);
    ggml_free(ctx);
    return 0;
}
