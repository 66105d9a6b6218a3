#!/usr/bin/env bash
# make bench: time to first token, prefill and decode tokens/s through MCP `infer` calls,
# for each model in each guest (TCG here; ACCEL=kvm where it works) and for the same engine
# and tools run natively on this host (`mcp-cli --host-engine`, 1 thread like the 1-core
# guest), in the same run. Prints a markdown table (also written to build/bench.md).
#
#   BENCH_MODELS   model files in build/share   (default: stories260K f32, SmolLM2 Q8_0, Q4_0)
#   BENCH_GUESTS   "x86_64:q35 aarch64:virt"
#   ACCEL          tcg | kvm
set -euo pipefail
cd "$(dirname "$0")/.."
CLI=target/release/mcp-cli
SHARE=build/share
ACCEL=${ACCEL:-tcg}
MODELS=${BENCH_MODELS:-"stories260k.safetensors smollm2-135m-instruct.q8_0.safetensors smollm2-135m-instruct.q4_0.safetensors"}
GUESTS=${BENCH_GUESTS:-"x86_64:q35 aarch64:virt"}
PROMPT="Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends."
OUT=build/bench
mkdir -p "$OUT"

# Runs and tokens per model: the small model gets more of both; SmolLM2 generates at
# well under 1 token/s under TCG.
params() {
    case "$1" in
        stories*) echo "3 64" ;;
        *) if [ "$2" = host ]; then echo "3 16"; else echo "1 16"; fi ;;
    esac
}

run() { # label model target-args...
    local label=$1 model=$2; shift 2
    read -r n tokens < <(params "$model" "$label")
    echo "bench: $label $model ($n x $tokens tokens)" >&2
    "$CLI" "$@" bench -n "$n" --prompt "$PROMPT" --max-tokens "$tokens" --json \
        > "$OUT/$label-$model.json"
    "$CLI" "$@" call metadata --json > "$OUT/$label-$model.meta.json" 2>/dev/null || true
}

for m in $MODELS; do
    [ -f "$SHARE/$m" ] || { echo "bench: $SHARE/$m missing (make share)" >&2; exit 1; }
    run host "$m" --host-engine "$SHARE/$m" --threads 1
    for g in $GUESTS; do
        arch=${g%%:*} machine=${g##*:}
        run "$arch-$machine" "$m" --boot "$arch" --machine "$machine" --accel "$ACCEL" \
            --model "$SHARE/$m" --ready-timeout-s 600
    done
done

python3 - "$OUT" "$ACCEL" "$MODELS" "$GUESTS" <<'PY' | tee build/bench.md
import json, sys, os
out, accel, models, guests = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4].split()
def load(label, m):
    with open(os.path.join(out, f"{label}-{m}.json")) as f:
        r = json.load(f)
    try:
        with open(os.path.join(out, f"{label}-{m}.meta.json")) as f:
            variant = json.load(f)["structuredContent"]["kernel_variant"]
    except Exception:
        variant = "?"
    return r, variant
med = lambda r, k: r[k]["median"]
print(f"| model | where | kernels | TTFT ms | prefill tok/s | decode tok/s | guest/host prefill | guest/host decode |")
print("|---|---|---|---|---|---|---|---|")
for m in models:
    h, hv = load("host", m)
    print(f"| {m} | host (native, 1 thread) | {hv} | {med(h,'ttft_ms'):.1f} | {med(h,'prefill_tokens_per_s'):.1f} | {med(h,'decode_tokens_per_s'):.1f} | 1 | 1 |")
    for g in guests:
        label = g.replace(":", "-")
        r, v = load(label, m)
        rp = med(r, 'prefill_tokens_per_s') / max(med(h, 'prefill_tokens_per_s'), 1e-9)
        rd = med(r, 'decode_tokens_per_s') / max(med(h, 'decode_tokens_per_s'), 1e-9)
        print(f"| {m} | {g.replace(':', ' ')} ({accel}) | {v} | {med(r,'ttft_ms'):.1f} | {med(r,'prefill_tokens_per_s'):.2f} | {med(r,'decode_tokens_per_s'):.2f} | {rp:.4f} | {rd:.4f} |")
PY
