#!/usr/bin/env python3
"""Produce the llama.cpp oracle fixture for the SmolLM2 tests (run once; the output is
committed as models/fixtures/smollm2-llamacpp.json; `make test` never runs this).

    mk-models export-gguf-f32 SmolLM2-135M-Instruct.Q4_1.gguf build/smollm2-f32.gguf
    <venv with llama-cpp-python 0.3.16>/bin/python models/tools/llama_cpp_oracle.py \
        build/smollm2-f32.gguf > models/fixtures/smollm2-llamacpp.json

The F32 GGUF holds every tensor of the Q4_1 file dequantised exactly, i.e. the same weights
our f32 path computes with. Records llama.cpp's token ids for a set of texts (tokenizer
oracle) and its greedy continuation of "Once upon a time" (64 tokens, argmax of the logits
after each step, no sampling)."""
import json
import sys

import numpy as np
from llama_cpp import Llama, __version__

TEXTS = [
    "Once upon a time",
    "Hello world, it's  me!\n\nok",
    "The year 2024 had 365 days; π≈3.14159.",
    "   leading spaces and trailing   ",
    "Ünïcödé tèxt: 日本語のテキスト, emoji 😀👍 and Ελληνικά.",
    "def f(x):\n\treturn x**2  # comment\n",
    "I'm sure they'll say we've done what you'd do, isn't it? DON'T",
    "tabs\tand\r\nnewlines\n\n\nend",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
]

llm = Llama(model_path=sys.argv[1], n_ctx=256, n_threads=2, n_batch=256,
            logits_all=True, verbose=False)
tok = {}
for t in TEXTS:
    tok[t] = {
        "plain": llm.tokenize(t.encode(), add_bos=False, special=False),
        "special": llm.tokenize(t.encode(), add_bos=False, special=True),
    }

prompt = llm.tokenize(b"Once upon a time", add_bos=False, special=False)
llm.reset()
llm.eval(prompt)
greedy = []
for _ in range(64):
    logits = np.asarray(llm.scores[llm.n_tokens - 1])
    nxt = int(np.argmax(logits))
    greedy.append(nxt)
    llm.eval([nxt])

json.dump({
    "producer": f"llama-cpp-python {__version__} (llama.cpp), models/tools/llama_cpp_oracle.py",
    "model": "F32 GGUF dequantised from SmolLM2-135M-Instruct.Q4_1.gguf by mk-models export-gguf-f32",
    "tokenize": tok,
    "greedy_prompt": "Once upon a time",
    "greedy_prompt_ids": prompt,
    "greedy_ids": greedy,
    "greedy_text": llm.detokenize(greedy).decode("utf-8", "replace"),
}, sys.stdout, ensure_ascii=False, indent=1)
print()
