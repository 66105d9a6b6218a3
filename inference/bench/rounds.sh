#!/usr/bin/env bash
# Interleaved A/B rounds: ours (given variants) and llama.cpp's ggml_mul_mat (plain and repacked
# weights) on each case, ROUNDS times in turn, then best-of and median per contender.
#
# usage: rounds.sh BENCH_BIN GGML_BIN "q4_0:576x576:128 q5_0:1024x640:1 ..." [ROUNDS] [VARIANTS]
# Prints the raw TSV rows to build/bench/rounds.tsv and a summary table to stdout.
set -euo pipefail
BENCH=$1; GGML=$2; CASES=$3; ROUNDS=${4:-5}; VARIANTS=${5:-avx2}
OUT=${OUT:-build/bench/rounds.tsv}
MIN_TIME=${MIN_TIME:-0.1}
: > "$OUT"
echo "load before: $(uptime)" >&2
for r in $(seq "$ROUNDS"); do
    for c in $CASES; do
        IFS=: read -r q shape b <<< "$c"
        rows=${shape%x*}; cols=${shape#*x}
        "$BENCH" --shapes "$shape" --quants "$q" --batch "$b" --threads 1 --variants "$VARIANTS" \
            --min-time "$MIN_TIME" | sed "s/^/$r\t/" >> "$OUT"
        "$GGML" "$q" "$rows" "$cols" "$b" 1 "$MIN_TIME" | sed "s/^/$r\t/" >> "$OUT"
        if [ "$b" != 1 ] && [[ " q4_0 q4_k " == *" $q "* ]]; then  # types with a repacked layout here
            "$GGML" "$q" "$rows" "$cols" "$b" 1 "$MIN_TIME" repack 2>/dev/null | sed "s/^/$r\t/" >> "$OUT" || true
        fi
    done
done
echo "load after: $(uptime)" >&2
python3 - "$OUT" <<'PY'
import collections, statistics, sys
t = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    if len(f) != 11:
        continue
    _, impl, var, q, r, c, b, th, us = f[:9]
    t[(q, f"{r}x{c}", int(b))].append((var, float(us)))
print("| quant | shape | batch | contender | best µs | median µs | best llama.cpp / best ours |")
print("|---|---|---|---|---|---|---|")
for key, rows in t.items():
    by = collections.defaultdict(list)
    for v, us in rows:
        by[v].append(us)
    ours = min(min(u) for v, u in by.items() if not v.startswith("ggml"))
    llama = min((min(u) for v, u in by.items() if v.startswith("ggml")), default=None)
    for v, u in by.items():
        ratio = f"{llama / ours:.2f}x" if llama and not v.startswith("ggml") else ""
        print(f"| {key[0]} | {key[1]} | {key[2]} | {v} | {min(u):.1f} | {statistics.median(u):.1f} | {ratio} |")
PY
