"""Formats bench-host results as the markdown tables of docs/BENCHMARKS.md ("Kernels").

usage: report.py matmul.tsv [llama-e2e.tsv [ours-e2e.tsv]]
"""
import collections
import sys

LAYERS = 30
# SmolLM2-135M matmuls per token: q, k, v, o, gate, up, down per layer; tied classifier once.
PER_LAYER = {"576x576": 2, "192x576": 2, "1536x576": 2, "576x1536": 1}
CLASSIFIER = "49152x576"


def load(path):
    rows = []
    for line in open(path):
        f = line.rstrip("\n").split("\t")
        if len(f) != 10:
            continue
        impl, var, q, r, c, b, t, us, gf, gbs = f
        name = var if impl != "llama.cpp" else ("llama.cpp repacked" if var == "ggml-repack" else "llama.cpp")
        rows.append((name, q, f"{r}x{c}", int(b), int(t), float(us), float(gf), float(gbs)))
    return rows


def main():
    rows = load(sys.argv[1])
    names = []
    for r in rows:
        if r[0] not in names and not r[0].startswith("llama.cpp"):
            names.append(r[0])
    names += ["llama.cpp", "llama.cpp repacked"]
    us = {(n, q, s, b, t): u for n, q, s, b, t, u, _, _ in rows}
    perf = {(n, q, s, b, t): (g, gb) for n, q, s, b, t, _, g, gb in rows}
    keys = sorted({(q, s, b, t) for _, q, s, b, t, _, _, _ in rows},
                  key=lambda k: (k[3], k[2], k[0], int(k[1].split("x")[0]) * int(k[1].split("x")[1])))

    print("### Matmul per call (µs; decode: weight GB/s, prefill: GFLOP/s)\n")
    print("| quant | shape | batch | threads | " + " | ".join(names) + " | llama.cpp / best ours |")
    print("|---" * (5 + len(names)) + "|")
    for q, s, b, t in keys:
        cells, best = [], None
        for n in names:
            u = us.get((n, q, s, b, t))
            if u is None:
                cells.append("–")
                continue
            g, gb = perf[(n, q, s, b, t)]
            cells.append(f"{u:.1f} ({gb:.1f} GB/s)" if b == 1 else f"{u:.0f} ({g:.0f} GF/s)")
            if not n.startswith("llama.cpp"):
                best = u if best is None else min(best, u)
        theirs = [us[k] for k in (("llama.cpp", q, s, b, t), ("llama.cpp repacked", q, s, b, t)) if k in us]
        llama = min(theirs) if theirs else None
        ratio = f"{llama / best:.2f}x" if llama and best else "–"
        print(f"| {q} | {s} | {b} | {t} | " + " | ".join(cells) + f" | {ratio} |")

    print("\n### SmolLM2-135M matmul-only token rate (30 layers x q,k,v,o,gate,up,down + the "
          "classifier for the last position, from the per-call times above; no attention, norms "
          "or sampling)\n")
    print("| quant | phase | threads | " + " | ".join(names) + " |")
    print("|---" * (3 + len(names)) + "|")
    for q in sorted({k[0] for k in keys}):
        for b in sorted({k[2] for k in keys}):
            for t in sorted({k[3] for k in keys}):
                cells = []
                for n in names:
                    try:
                        tot = sum(LAYERS * k * us[(n, q, s, b, t)] for s, k in PER_LAYER.items())
                        # Prefill only needs the last position's logits (llama.cpp does the
                        # same), so the classifier always counts at batch 1.
                        tot += us[(n, q, CLASSIFIER, 1, t)]
                        cells.append(f"{b * 1e6 / tot:.0f} tok/s")
                    except KeyError:
                        cells.append("–")
                phase = "decode" if b == 1 else f"prefill {b}"
                print(f"| {q} | {phase} | {t} | " + " | ".join(cells) + " |")

    if len(sys.argv) > 2:
        e2e = collections.OrderedDict()
        for path, who in ((sys.argv[2], "llama.cpp"), (sys.argv[3] if len(sys.argv) > 3 else None, "ours")):
            if not path:
                continue
            for line in open(path):
                f = line.rstrip("\n").split("\t")
                if len(f) == 5:
                    phase = "prefill" if f[3].startswith("prefill") else "decode"
                    e2e.setdefault((f[1], f[2], phase), {})[who] = float(f[4])
        print("\n### SmolLM2-135M-Instruct end to end (same ~110-token prompt for both, 64 decoded tokens, best of 3)\n")
        print("| quant | threads | phase | microkernelia tok/s | llama.cpp tok/s | ours / llama.cpp |")
        print("|---|---|---|---|---|---|")
        for (q, t, phase), v in e2e.items():
            o, l = v.get("ours"), v.get("llama.cpp")
            ratio = f"{o / l:.2f}" if o and l else "–"
            print(f"| {q} | {t} | {phase} | {o if o else '–'} | {l if l else '–'} | {ratio} |")


if __name__ == "__main__":
    main()
