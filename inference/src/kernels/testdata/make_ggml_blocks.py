"""Makes ggml_blocks.bin, the independent-dequantisation fixture of the kernel tests.

Run once (not at test time) with the `gguf` Python package, llama.cpp's own reader/writer,
whose numpy (de)quantisers are independent of our Rust code:

    python3 -m venv build/gguf-venv && build/gguf-venv/bin/pip install gguf==0.19.0
    build/gguf-venv/bin/python inference/src/kernels/testdata/make_ggml_blocks.py

Format (little endian): b"MKQBLK01", then sections of
    name: 8 bytes (type name, NUL padded), kind: u32, n_values: u32, n_bytes: u32, payload
kind 0 = dequantisation: n_bytes of random blocks (every bit of every field random, f16 fields
         replaced by finite values), then n_values f32 that gguf dequantises them to;
kind 1 = quantisation: n_values f32 source values, then the n_bytes gguf quantises them to.
"""
import struct
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize

# Byte offsets of the f16 fields (scales, minima) inside each block.
F16_FIELDS = {
    T.Q8_0: [0], T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2],
    T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}
VALUES = 1024  # per type: 32 legacy blocks or 4 super-blocks


def random_blocks(rng, qt):
    block_values, block_bytes = GGML_QUANT_SIZES[qt]
    n = VALUES // block_values
    raw = rng.integers(0, 256, size=(n, block_bytes), dtype=np.uint8)
    for at in F16_FIELDS[qt]:
        # magnitudes from 1e-4 to 10, both signs (K-quant minima are subtracted: sign matters)
        v = (rng.uniform(-1, 1, n) * 10.0 ** rng.uniform(-4, 1, n)).astype(np.float16)
        raw[:, at:at + 2] = v.view(np.uint8).reshape(n, 2)
    return raw


def main(out):
    rng = np.random.default_rng(20261203)
    buf = bytearray(b"MKQBLK01")

    def section(qt, kind, values, blocks):
        name = qt.name.lower().encode().ljust(8, b"\0")
        buf.extend(name + struct.pack("<III", kind, values.size, blocks.size))
        first, second = (blocks, values) if kind == 0 else (values, blocks)
        buf.extend(first.astype(first.dtype.newbyteorder("<")).tobytes())
        buf.extend(second.astype(second.dtype.newbyteorder("<")).tobytes())

    for qt in F16_FIELDS:
        blocks = random_blocks(rng, qt)
        values = dequantize(blocks.reshape(-1), qt).astype(np.float32).reshape(-1)
        assert values.size == VALUES and np.isfinite(values).all(), qt
        section(qt, 0, values, blocks.reshape(-1))
    for qt in (T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1):
        src = (rng.standard_normal(VALUES) * 10.0 ** rng.uniform(-3, 2)).astype(np.float32)
        src[:32] = np.abs(src[:32])  # one block with no negative value
        src[32:64] = 0.0  # and one all-zero block
        blocks = quantize(src.reshape(1, -1), qt).reshape(-1)
        section(qt, 1, src, blocks)
    Path(out).write_bytes(bytes(buf))
    print(f"{out}: {len(buf)} bytes")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).with_name("ggml_blocks.bin")))
