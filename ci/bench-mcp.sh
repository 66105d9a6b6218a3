#!/usr/bin/env bash
# make bench: time to first token, prefill and decode tokens/s through MCP `infer` calls,
# for each model in each guest (TCG here; ACCEL=kvm where it works) and for the same engine
# and tools run natively on this host (`mcp-cli --host-engine`, 1 thread like the 1-core
# guest), in the same run. Prints a markdown table (also written to build/bench.md).
#
#   BENCH_MODELS   model files in build/share   (default: stories260K f32, SmolLM2 Q8_0, Q4_0)
#   BENCH_GUESTS   "x86_64:q35 aarch64:virt"
#   ACCEL          tcg | kvm
#
# Then, per guest, vsock against HTTP in the same VM (stories260K, BENCH_TRANSPORT_MODEL):
# ping and health round trips (median, p99) and infer tok/s over each transport, the runs
# interleaved (vsock, HTTP, vsock, HTTP, ...). Table in build/bench-transports.md.
#   BENCH_TRANSPORT_ROUNDS  interleaved rounds (default 3)
#   BENCH_TRANSPORTS_ONLY=1 skip the per-model table
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

if [ -z "${BENCH_TRANSPORTS_ONLY:-}" ]; then
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
fi

# ---------------------------------------------------------------- transports ----
TMODEL=${BENCH_TRANSPORT_MODEL:-stories260k.safetensors}
ROUNDS=${BENCH_TRANSPORT_ROUNDS:-3}
RUNNER=target/release/mk-run
[ -x "$RUNNER" ] || cargo build -q --release -p ci --bin mk-run
for g in $GUESTS; do
    arch=${g%%:*} machine=${g##*:}
    label="$arch-$machine"
    case $arch in
        x86_64) kernel=kernel/target/x86_64-microkernelia/release/kernel ;;
        *) kernel=kernel/target/aarch64-unknown-none/release/Image ;;
    esac
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    rundir=$(mktemp -d /tmp/mk-bench-XXXXXX)
    echo "bench: transports on $label ($TMODEL), http port $port" >&2
    "$RUNNER" run --machine "$machine" --accel "$ACCEL" --kernel "$kernel" --share "$SHARE" \
        --model "$TMODEL" --http-port "$port" --run-dir "$rundir/run" --timeout 3600 \
        > "$OUT/transport-$label.serial" 2>&1 &
    vm=$!
    url="http://127.0.0.1:$port/mcp"
    vsock=(--vsock-uds "$rundir/run/vsock.uds" --port 5000)
    for _ in $(seq 600); do
        "$CLI" --url "$url" --timeout-ms 2000 call health >/dev/null 2>&1 && break
        sleep 0.5
    done
    for r in $(seq "$ROUNDS"); do
        for t in vsock http; do
            if [ $t = vsock ]; then target=("${vsock[@]}"); else target=(--url "$url"); fi
            "$CLI" "${target[@]}" latency -n 200 --json > "$OUT/transport-$label-$t-$r.lat.json"
            "$CLI" "${target[@]}" bench -n 3 --prompt "$PROMPT" --max-tokens 64 --json \
                > "$OUT/transport-$label-$t-$r.bench.json"
        done
    done
    kill "$vm" 2>/dev/null || true
    wait "$vm" 2>/dev/null || true
    rm -rf "$rundir"
done

python3 - "$OUT" "$GUESTS" "$ROUNDS" "$(uptime)" <<'PY' | tee build/bench-transports.md
import json, sys, os, statistics as st
out, guests, rounds, load = sys.argv[1], sys.argv[2].split(), int(sys.argv[3]), sys.argv[4]
def get(label, t, r, kind):
    with open(os.path.join(out, f"transport-{label}-{t}-{r}.{kind}.json")) as f:
        return json.load(f)
print(f"Load during the run: {load.strip()}")
print()
print("| guest | transport | ping median / p99 ms | health median / p99 ms | infer decode tok/s (median of rounds, best) | HTTP vs vsock decode |")
print("|---|---|---|---|---|---|")
for g in guests:
    label = g.replace(":", "-")
    dec = {}
    for t in ("vsock", "http"):
        lat = [get(label, t, r, "lat") for r in range(1, rounds + 1)]
        ping_m = st.median(l["ping"]["median_ms"] for l in lat)
        ping_p = st.median(l["ping"]["p99_ms"] for l in lat)
        h_m = st.median(l["health"]["median_ms"] for l in lat)
        h_p = st.median(l["health"]["p99_ms"] for l in lat)
        d = [get(label, t, r, "bench")["decode_tokens_per_s"]["median"] for r in range(1, rounds + 1)]
        dec[t] = (st.median(d), max(d))
        rel = "" if t == "vsock" else f"{100 * (dec['http'][0] / dec['vsock'][0] - 1):+.1f}% (best {100 * (dec['http'][1] / dec['vsock'][1] - 1):+.1f}%)"
        print(f"| {g.replace(':', ' ')} | {t} | {ping_m:.2f} / {ping_p:.2f} | {h_m:.2f} / {h_p:.2f} | {dec[t][0]:.1f} ({dec[t][1]:.1f}) | {rel} |")
PY
