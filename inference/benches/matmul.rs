//! Matmul micro-benchmark: every kernel variant this CPU runs × quant × shape × batch × threads.
//! Prints TSV rows (same columns as bench/ggml_matmul.c):
//! impl, variant, quant, rows, cols, batch, threads, us/call, GFLOP/s, weight GB/s.
//!
//! cargo bench -p inference --bench matmul -- [--variants a,b] [--quants q8_0,q4_0]
//!     [--shapes 576x576,49152x576] [--batch 1,64] [--threads 1,2] [--min-time 0.2]

mod pool;

use inference::kernels::{host_features, KernelVariant, Kernels, MatRef};
use inference::quant::{quantize_row, row_bytes, QuantType};
use std::time::Instant;

fn list(args: &[String], key: &str, default: &str) -> Vec<String> {
    let v = args
        .iter()
        .position(|a| a == key)
        .and_then(|i| args.get(i + 1))
        .map(|s| s.as_str())
        .unwrap_or(default);
    v.split(',')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let f = host_features();
    let variants: Vec<Kernels> = list(&args, "--variants", "all")
        .iter()
        .flat_map(|name| {
            KernelVariant::ALL
                .into_iter()
                .filter(move |v| name == "all" || v.name() == name)
                .filter_map(|v| Kernels::with_variant(v, &f))
        })
        .collect();
    let quants: Vec<QuantType> = list(&args, "--quants", "q8_0,q4_0,q4_1")
        .iter()
        .map(|q| QuantType::from_name(q).expect("quant name"))
        .collect();
    let shapes: Vec<(usize, usize)> =
        list(&args, "--shapes", "576x576,1536x576,576x1536,49152x576")
            .iter()
            .map(|s| {
                let (r, c) = s.split_once('x').expect("ROWSxCOLS");
                (r.parse().unwrap(), c.parse().unwrap())
            })
            .collect();
    let batches: Vec<usize> = list(&args, "--batch", "1,64")
        .iter()
        .map(|b| b.parse().unwrap())
        .collect();
    let threads: Vec<usize> = list(&args, "--threads", "1")
        .iter()
        .map(|t| t.parse().unwrap())
        .collect();
    let min_time: f64 = list(&args, "--min-time", "0.2")[0].parse().unwrap();

    let mut seed = 0x243f_6a88_85a3_08d3u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    };
    for &(rows, cols) in &shapes {
        let wf: Vec<f32> = (0..rows * cols).map(|_| rand()).collect();
        for &qt in &quants {
            let rb = row_bytes(qt, cols);
            let mut data = vec![0u8; rows * rb];
            for r in 0..rows {
                quantize_row(
                    qt,
                    &wf[r * cols..(r + 1) * cols],
                    &mut data[r * rb..(r + 1) * rb],
                );
            }
            let w = MatRef::new(qt, rows, cols, &data).unwrap();
            for &batch in &batches {
                let x: Vec<f32> = (0..batch * cols).map(|i| wf[i % wf.len()] * 0.5).collect();
                let mut out = vec![0.0f32; batch * rows];
                for &t in &threads {
                    let exec = pool::SpinPool::new(t);
                    for k in &variants {
                        k.matmul(w, &x, batch, &mut out, &exec); // warm-up
                                                                 // Minimum per-call time: the machine is shared, and the fastest call
                                                                 // is the one nobody preempted.
                        let mut best = f64::MAX;
                        let start = Instant::now();
                        let mut iters = 0;
                        while iters < 5 || start.elapsed().as_secs_f64() < min_time {
                            let t0 = Instant::now();
                            k.matmul(w, &x, batch, &mut out, &exec);
                            best = best.min(t0.elapsed().as_secs_f64());
                            iters += 1;
                        }
                        let flop = 2.0 * (rows * cols * batch) as f64;
                        println!(
                            "microkernelia\t{}\t{}\t{rows}\t{cols}\t{batch}\t{t}\t{:.2}\t{:.2}\t{:.2}",
                            k.variant().name(),
                            qt.name(),
                            best * 1e6,
                            flop / best * 1e-9,
                            data.len() as f64 / best * 1e-9
                        );
                    }
                }
            }
        }
    }
}
