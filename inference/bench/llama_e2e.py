"""llama.cpp end-to-end SmolLM2-135M prefill / decode tokens/s through llama-cpp-python.

usage: llama_e2e.py GGUF_Q4_1 OUT_DIR THREADS...   (prints TSV: impl quant threads phase tok/s)
env BENCH_PROMPT: the prompt text (bench-host.sh gives our engine the same text).

The Q8_0 / Q4_0 files are requantised from the Q4_1 GGUF with llama.cpp's own quantiser
(`pure`, so every tensor, including the tied embedding / classifier, has the named type), i.e.
the same weights our converter produces from that file.
"""
import ctypes
import os
import sys
import time

import llama_cpp

FTYPES = {"q4_1": None, "q8_0": 7, "q4_0": 2}  # LLAMA_FTYPE_MOSTLY_*
DEFAULT_PROMPT = ("Once upon a time, in a small village at the edge of a great forest, there lived "
                  "a curious little girl who loved to explore. ") * 4
DECODE_TOKENS = 64


def requantise(src, dst, ftype):
    if os.path.exists(dst):
        return
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = ftype
    p.allow_requantize = True
    p.pure = True
    p.nthread = 2
    rc = llama_cpp.llama_model_quantize(src.encode(), (dst + ".tmp").encode(), ctypes.byref(p))
    if rc != 0:
        raise SystemExit(f"llama_model_quantize {dst}: {rc}")
    os.replace(dst + ".tmp", dst)


def bench(path, threads):
    llm = llama_cpp.Llama(model_path=path, n_ctx=512, n_batch=512, n_threads=threads,
                          n_threads_batch=threads, verbose=False)
    text = os.environ.get("BENCH_PROMPT", DEFAULT_PROMPT)
    toks = llm.tokenize(text.encode(), add_bos=False)
    best_pre, best_dec = 0.0, 0.0
    for _ in range(3):  # best of 3: the machine is shared
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(toks)
        t1 = time.perf_counter()
        for i in range(DECODE_TOKENS):
            llm.eval([toks[i % len(toks)]])
        t2 = time.perf_counter()
        best_pre = max(best_pre, len(toks) / (t1 - t0))
        best_dec = max(best_dec, DECODE_TOKENS / (t2 - t1))
    return best_pre, best_dec, len(toks)


def main():
    src, out_dir, threads = sys.argv[1], sys.argv[2], [int(t) for t in sys.argv[3:]] or [1]
    os.makedirs(out_dir, exist_ok=True)
    for q, ftype in FTYPES.items():
        path = src if ftype is None else os.path.join(out_dir, f"smollm2-135m-instruct.{q}.gguf")
        if ftype is not None:
            requantise(src, path, ftype)
        for t in threads:
            pre, dec, n = bench(path, t)
            print(f"llama.cpp\t{q}\t{t}\tprefill{n}\t{pre:.1f}", flush=True)
            print(f"llama.cpp\t{q}\t{t}\tdecode\t{dec:.1f}", flush=True)


if __name__ == "__main__":
    main()
