//! Quantised matmul kernels: one portable scalar path and SIMD paths per ISA, chosen once at
//! start-up from a [`CpuFeatures`] the caller passes in (the crate never detects features itself,
//! so tests can force every path; the kernel passes what `arch` decoded at boot, host programs
//! [`host_features`]). [`KernelVariant::supported`] is the one mapping from features to variants.
//!
//! Work is tiled as up to `TILE` weight rows × `TILE` activation rows, so a prefill batch reuses
//! each weight tile (and the activations quantised once per call) from cache; rows are split over
//! the [`Executor`]'s workers.

mod act;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod gemm_avx2;
#[cfg(any(test, feature = "std"))]
mod host;
#[cfg(target_arch = "aarch64")]
mod neon;
mod scalar;

use crate::exec::Executor;
use crate::quant::{check_row_len, matrix_bytes, row_bytes, QuantType, RowLenError};
use act::{ActFns, ActFormat, QActs};
use alloc::vec;
use alloc::vec::Vec;
/// What the CPU has and the OS allows (`arch`'s decoding); `Default` is nothing: the scalar path.
pub use arch::CpuFeatures;
#[cfg(any(test, feature = "std"))]
pub use host::host_features;

/// Kernel implementations, best last within each ISA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelVariant {
    Scalar,
    Avx2,
    Avx512,
    Avx512Vnni,
    Neon,
    NeonDotprod,
    NeonI8mm,
}

impl KernelVariant {
    pub const ALL: [KernelVariant; 7] = [
        KernelVariant::Scalar,
        KernelVariant::Avx2,
        KernelVariant::Avx512,
        KernelVariant::Avx512Vnni,
        KernelVariant::Neon,
        KernelVariant::NeonDotprod,
        KernelVariant::NeonI8mm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            KernelVariant::Scalar => "scalar",
            KernelVariant::Avx2 => "avx2",
            KernelVariant::Avx512 => "avx512",
            KernelVariant::Avx512Vnni => "avx512vnni",
            KernelVariant::Neon => "neon",
            KernelVariant::NeonDotprod => "neon-dotprod",
            KernelVariant::NeonI8mm => "neon-i8mm",
        }
    }

    /// Whether this variant exists for the compilation target and `f` has what it needs.
    pub fn supported(self, f: &CpuFeatures) -> bool {
        let x86 = cfg!(target_arch = "x86_64");
        let arm = cfg!(target_arch = "aarch64");
        let avx2 = x86 && f.avx2 && f.fma && f.f16c;
        let avx512 = avx2 && f.avx512f && f.avx512bw && f.avx512vl;
        match self {
            KernelVariant::Scalar => true,
            KernelVariant::Avx2 => avx2,
            KernelVariant::Avx512 => avx512,
            KernelVariant::Avx512Vnni => avx512 && f.avx512vnni,
            KernelVariant::Neon => arm && f.neon,
            KernelVariant::NeonDotprod => arm && f.neon && f.dotprod,
            KernelVariant::NeonI8mm => arm && f.neon && f.dotprod && f.i8mm,
        }
    }
}

/// A weight matrix `[rows, cols]` stored as `rows` rows of `row_bytes(qtype, cols)` bytes.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub qtype: QuantType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
}

/// Why a [`MatRef`] is not usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatError {
    /// The type cannot hold rows of `cols` values (K-quants need whole super-blocks).
    RowLen(RowLenError),
    /// `data` is not `rows * row_bytes(qtype, cols)` bytes (or that size overflows).
    Size {
        expected: Option<usize>,
        actual: usize,
    },
}

impl core::fmt::Display for MatError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MatError::RowLen(e) => e.fmt(f),
            MatError::Size {
                expected: Some(e),
                actual,
            } => write!(f, "matrix data is {actual} bytes, expected {e}"),
            MatError::Size {
                expected: None,
                actual,
            } => write!(f, "matrix size overflows (data is {actual} bytes)"),
        }
    }
}

impl<'a> MatRef<'a> {
    /// Checked constructor for untrusted shapes.
    pub fn new(
        qtype: QuantType,
        rows: usize,
        cols: usize,
        data: &'a [u8],
    ) -> Result<Self, MatError> {
        check_row_len(qtype, cols).map_err(MatError::RowLen)?;
        let expected = matrix_bytes(qtype, rows, cols);
        if expected != Some(data.len()) {
            return Err(MatError::Size {
                expected,
                actual: data.len(),
            });
        }
        Ok(MatRef {
            qtype,
            rows,
            cols,
            data,
        })
    }
}

/// Max rows / activation columns of one kernel call.
pub(crate) const TILE: usize = 4;
/// Weight rows whose prefill results are buffered before going to `out` (a multiple of TILE).
const ROW_BLOCK: usize = 64;
/// Kernel output: `tile[c][r]` = dot(weight row r, activation row c).
pub(crate) type Tile = [[f32; TILE]; TILE];

/// `(w = nr rows back to back, nr, acts, b0, nc, out)`.
type QTileFn = unsafe fn(&[u8], usize, &QActs, usize, usize, &mut Tile);
/// `(w, nr, cols, x, b0, nc, out)`.
type F32TileFn = unsafe fn(&[u8], usize, usize, &[f32], usize, usize, &mut Tile);
/// Prefill over a row block: `(w = nr rows, nr, acts, batch, out, stride, scratch)` writes
/// `out[b * stride + r]` for every activation row `b` and weight row `r < nr`.
type PanelFn = unsafe fn(&[u8], usize, &QActs, usize, &mut [f32], usize, &mut Vec<u8>);
/// Q8_0 decode reads matrices at least this big as one sequential stream (see avx2.rs).
const STREAM_BYTES: usize = 4 << 20;
/// Smallest batch the panel kernels take (below it the decode tiles are as fast).
const PANEL_MIN_BATCH: usize = 4;

#[derive(Clone, Copy)]
struct Table {
    act: ActFns,
    f32: F32TileFn,
    q8_0: QTileFn,
    q4_0: QTileFn,
    q4_1: QTileFn,
    q5_0: QTileFn,
    q5_1: QTileFn,
    q4_k: QTileFn,
    q5_k: QTileFn,
    q6_k: QTileFn,
    /// Prefill kernels where a variant has them (Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q8_0).
    panels: [Option<PanelFn>; 7],
}

impl Table {
    /// The prefill panel kernel of `qt`, if the variant has one.
    fn panel(&self, qt: QuantType) -> Option<PanelFn> {
        match qt {
            QuantType::Q4_0 => self.panels[0],
            QuantType::Q4_1 => self.panels[1],
            QuantType::Q5_0 => self.panels[2],
            QuantType::Q5_1 => self.panels[3],
            QuantType::Q4_K => self.panels[4],
            QuantType::Q5_K => self.panels[5],
            QuantType::Q8_0 => self.panels[6],
            _ => None,
        }
    }

    /// The kernel and activation format of a quantised type (`None` for F32).
    fn quantised(&self, qt: QuantType) -> Option<(QTileFn, ActFormat)> {
        use ActFormat::{Q8, Q8K};
        Some(match qt {
            QuantType::F32 => return None,
            QuantType::Q8_0 => (self.q8_0, Q8),
            QuantType::Q4_0 => (self.q4_0, Q8),
            QuantType::Q4_1 => (self.q4_1, Q8),
            QuantType::Q5_0 => (self.q5_0, Q8),
            QuantType::Q5_1 => (self.q5_1, Q8),
            QuantType::Q4_K => (self.q4_k, Q8K),
            QuantType::Q5_K => (self.q5_k, Q8K),
            QuantType::Q6_K => (self.q6_k, Q8K),
        })
    }
}

const SCALAR: Table = Table {
    act: act::SCALAR_ACT,
    f32: scalar::tile_f32,
    q8_0: scalar::tile_q8_0,
    q4_0: scalar::tile_q4_0,
    q4_1: scalar::tile_q4_1,
    q5_0: scalar::tile_q5_0,
    q5_1: scalar::tile_q5_1,
    q4_k: scalar::tile_q4_k,
    q5_k: scalar::tile_q5_k,
    q6_k: scalar::tile_q6_k,
    panels: [None; 7],
};

#[cfg(target_arch = "x86_64")]
const AVX2: Table = Table {
    act: ActFns {
        q8: avx2::quantize_block,
        q8k: avx2::quantize_super_block,
    },
    f32: scalar::tile_f32,
    q8_0: avx2::tile_q8_0,
    q4_0: avx2::tile_q4_0,
    q4_1: avx2::tile_q4_1,
    q5_0: avx2::tile_q5_0,
    q5_1: avx2::tile_q5_1,
    q4_k: avx2::tile_q4_k,
    q5_k: avx2::tile_q5_k,
    q6_k: avx2::tile_q6_k,
    panels: [
        Some(gemm_avx2::panel_q4_0),
        Some(gemm_avx2::panel_q4_1),
        Some(gemm_avx2::panel_q5_0),
        Some(gemm_avx2::panel_q5_1),
        Some(gemm_avx2::panel_q4_k),
        Some(gemm_avx2::panel_q5_k),
        Some(gemm_avx2::panel_q8_0),
    ],
};

/// The selected kernel set.
#[derive(Clone, Copy)]
pub struct Kernels {
    variant: KernelVariant,
    table: Table,
}

impl core::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Kernels")
            .field("variant", &self.variant)
            .finish()
    }
}

/// Output pointer shared by the tasks; each task writes a disjoint set of rows.
struct SharedOut(*mut f32);
unsafe impl Sync for SharedOut {}

impl Kernels {
    /// The best variant `f` supports.
    ///
    /// `f` must be true of the CPU the code runs on: a variant whose instructions the CPU lacks
    /// faults (SIGILL / #UD) on first use.
    pub fn select(f: &CpuFeatures) -> Kernels {
        use KernelVariant::*;
        for v in [Avx512Vnni, Avx512, Avx2, NeonI8mm, NeonDotprod, Neon] {
            if let Some(k) = Kernels::with_variant(v, f) {
                return k;
            }
        }
        Kernels {
            variant: Scalar,
            table: SCALAR,
        }
    }

    /// A specific variant, or `None` if `f` (or the target) does not support it.
    pub fn with_variant(v: KernelVariant, f: &CpuFeatures) -> Option<Kernels> {
        if !v.supported(f) {
            return None;
        }
        let table = match v {
            KernelVariant::Scalar => SCALAR,
            #[cfg(target_arch = "x86_64")]
            KernelVariant::Avx2 => AVX2,
            #[cfg(target_arch = "x86_64")]
            KernelVariant::Avx512 => {
                use avx512::plain as k;
                Table {
                    q8_0: k::tile_q8_0,
                    q4_0: k::tile_q4_0,
                    q4_1: k::tile_q4_1,
                    // Their own 4 x 4 tiles for Q8_0/Q4_0/Q4_1 (measured on AVX-512
                    // hardware); the AVX2 panels for Q5_0/Q5_1/Q4_K/Q5_K.
                    panels: [
                        None,
                        None,
                        AVX2.panels[2],
                        AVX2.panels[3],
                        AVX2.panels[4],
                        AVX2.panels[5],
                        None,
                    ],
                    ..AVX2
                }
            }
            #[cfg(target_arch = "x86_64")]
            KernelVariant::Avx512Vnni => {
                use avx512::vnni as k;
                Table {
                    q8_0: k::tile_q8_0,
                    q4_0: k::tile_q4_0,
                    q4_1: k::tile_q4_1,
                    // Their own 4 x 4 tiles for Q8_0/Q4_0/Q4_1 (measured on AVX-512
                    // hardware); the AVX2 panels for Q5_0/Q5_1/Q4_K/Q5_K.
                    panels: [
                        None,
                        None,
                        AVX2.panels[2],
                        AVX2.panels[3],
                        AVX2.panels[4],
                        AVX2.panels[5],
                        None,
                    ],
                    ..AVX2
                }
            }
            #[cfg(target_arch = "aarch64")]
            KernelVariant::Neon => {
                use neon::plain as k;
                Table {
                    act: ActFns {
                        q8: k::quantize_block,
                        ..act::SCALAR_ACT
                    },
                    q8_0: k::tile_q8_0,
                    q4_0: k::tile_q4_0,
                    q4_1: k::tile_q4_1,
                    q5_0: k::tile_q5_0,
                    q5_1: k::tile_q5_1,
                    q4_k: k::tile_q4_k,
                    q5_k: k::tile_q5_k,
                    q6_k: k::tile_q6_k,
                    ..SCALAR
                }
            }
            #[cfg(target_arch = "aarch64")]
            KernelVariant::NeonDotprod => {
                use neon::dotprod as k;
                Table {
                    act: ActFns {
                        q8: k::quantize_block,
                        ..act::SCALAR_ACT
                    },
                    q8_0: k::tile_q8_0,
                    q4_0: k::tile_q4_0,
                    q4_1: k::tile_q4_1,
                    q5_0: k::tile_q5_0,
                    q5_1: k::tile_q5_1,
                    q4_k: k::tile_q4_k,
                    q5_k: k::tile_q5_k,
                    q6_k: k::tile_q6_k,
                    ..SCALAR
                }
            }
            #[cfg(target_arch = "aarch64")]
            KernelVariant::NeonI8mm => {
                use neon::i8mm as k;
                Table {
                    act: ActFns {
                        q8: k::quantize_block,
                        ..act::SCALAR_ACT
                    },
                    q8_0: k::tile_q8_0,
                    q4_0: k::tile_q4_0,
                    q4_1: k::tile_q4_1,
                    q5_0: k::tile_q5_0,
                    q5_1: k::tile_q5_1,
                    q4_k: k::tile_q4_k,
                    q5_k: k::tile_q5_k,
                    q6_k: k::tile_q6_k,
                    ..SCALAR
                }
            }
            _ => return None,
        };
        Some(Kernels { variant: v, table })
    }

    pub fn variant(&self) -> KernelVariant {
        self.variant
    }

    /// `out[b*rows + r] = sum_c W[r, c] * x[b*cols + c]` for `b in 0..batch`.
    ///
    /// `batch == 1` is decode (matrix × vector), `batch > 1` prefill (matrix × matrix).
    /// Activations are quantised on the fly to Q8 blocks for quantised weights; F32 weights use
    /// a sequential-order f32 sum (bit-identical to llama2.c run.c).
    ///
    /// Panics if the slice sizes do not match the shapes, or a K-quant row is not whole
    /// super-blocks (caller bugs: validate untrusted shapes with [`MatRef::new`]).
    pub fn matmul(&self, w: MatRef, x: &[f32], batch: usize, out: &mut [f32], exec: &dyn Executor) {
        let (rows, cols) = (w.rows, w.cols);
        let rb = row_bytes(w.qtype, cols);
        assert!(check_row_len(w.qtype, cols).is_ok(), "matmul: row length");
        assert_eq!(w.data.len(), rows * rb, "matmul: weight size");
        assert!(x.len() >= batch * cols, "matmul: x too short");
        assert!(out.len() >= batch * rows, "matmul: out too short");
        if rows == 0 || batch == 0 {
            return;
        }
        let quantised = self.table.quantised(w.qtype);
        let acts = quantised.map(|(_, fmt)| {
            let mut a = QActs::quantize(x, cols, batch, fmt, &self.table.act);
            a.stream = batch == 1 && w.qtype == QuantType::Q8_0 && w.data.len() >= STREAM_BYTES;
            a
        });
        let qtile = quantised.map(|(f, _)| f);
        let panel = self
            .table
            .panel(w.qtype)
            .filter(|_| batch >= PANEL_MIN_BATCH);
        let f32tile = self.table.f32;

        let row_tiles = rows.div_ceil(TILE);
        let tasks = exec.workers().clamp(1, row_tiles);
        let per_task = row_tiles.div_ceil(tasks);
        let shared = SharedOut(out.as_mut_ptr());
        let shared = &shared;
        let acts = acts.as_ref();

        let task = |t: usize| {
            let r_begin = (t * per_task * TILE).min(rows);
            let r_end = ((t + 1) * per_task * TILE).min(rows);
            let mut tile: Tile = [[0.0; TILE]; TILE];
            // Prefill writes go through a [batch][ROW_BLOCK] buffer and leave in whole runs of
            // ROW_BLOCK floats: writing 4 floats per activation row straight into `out` touches
            // `batch` lines `rows * 4` bytes apart, which alias in the caches for large `rows`.
            let mut buf = if batch > 1 {
                vec![0.0f32; batch * ROW_BLOCK]
            } else {
                Vec::new()
            };
            let mut scratch = Vec::new();
            let mut blk = r_begin;
            while blk < r_end {
                let blk_end = (blk + ROW_BLOCK).min(r_end);
                if let (Some(p), Some(a)) = (panel, acts) {
                    let wb = &w.data[blk * rb..blk_end * rb];
                    // SAFETY: as for the tiles below; `buf` is batch * ROW_BLOCK floats.
                    unsafe {
                        p(
                            wb,
                            blk_end - blk,
                            a,
                            batch,
                            &mut buf,
                            ROW_BLOCK,
                            &mut scratch,
                        )
                    };
                }
                let mut r0 = if panel.is_some() { blk_end } else { blk };
                while r0 < blk_end {
                    let nr = TILE.min(blk_end - r0);
                    let wt = &w.data[r0 * rb..(r0 + nr) * rb];
                    let mut b0 = 0;
                    while b0 < batch {
                        let nc = TILE.min(batch - b0);
                        // SAFETY: the table only holds functions whose CPU features `select` /
                        // `with_variant` checked; slices are in bounds by construction.
                        unsafe {
                            match (qtile, acts) {
                                (Some(f), Some(a)) => f(wt, nr, a, b0, nc, &mut tile),
                                _ => f32tile(wt, nr, cols, x, b0, nc, &mut tile),
                            }
                        }
                        for (c, tc) in tile.iter().enumerate().take(nc) {
                            if batch > 1 {
                                let at = (b0 + c) * ROW_BLOCK + r0 - blk;
                                buf[at..at + nr].copy_from_slice(&tc[..nr]);
                            } else {
                                for (r, &v) in tc.iter().enumerate().take(nr) {
                                    // SAFETY: r0 + r < rows, in `out`; tasks own disjoint rows.
                                    unsafe { *shared.0.add(r0 + r) = v };
                                }
                            }
                        }
                        b0 += nc;
                    }
                    r0 += nr;
                }
                if batch > 1 {
                    for b in 0..batch {
                        let src = &buf[b * ROW_BLOCK..b * ROW_BLOCK + blk_end - blk];
                        // SAFETY: b < batch and blk_end <= rows, so the run is inside `out`;
                        // tasks own disjoint row ranges.
                        unsafe {
                            core::ptr::copy_nonoverlapping(
                                src.as_ptr(),
                                shared.0.add(b * rows + blk),
                                src.len(),
                            )
                        };
                    }
                }
                blk = blk_end;
            }
        };
        if tasks == 1 {
            task(0);
        } else {
            exec.run(tasks, &task);
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod candle_oracle;
#[cfg(test)]
mod ggml_fixture;
#[cfg(test)]
mod tests;
