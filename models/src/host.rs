//! Host-side glue for running the engine: a clock, and the CPU feature set for kernel choice.

use std::sync::OnceLock;
use std::time::Instant;

/// Monotonic nanoseconds since the first call (the engine takes the clock as `fn() -> u64`).
pub fn clock_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// CPU features of this host (std detection, shared with the inference crate's own tests).
pub use inference::kernels::host_features;

/// Executor over std threads: each `run` spreads tasks over `threads` scoped threads (the
/// caller is one of them). Simple rather than fast: threads are spawned per call.
pub struct ScopedThreads {
    pub threads: usize,
}

impl inference::exec::Executor for ScopedThreads {
    fn workers(&self) -> usize {
        self.threads.max(1)
    }

    fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let next = AtomicUsize::new(0);
        let work = || loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= tasks {
                break;
            }
            f(i);
        };
        std::thread::scope(|s| {
            for _ in 1..self.workers().min(tasks) {
                s.spawn(work);
            }
            work();
        });
    }
}

/// A persistent std-thread executor: workers wait for work by spinning briefly, then yielding,
/// so handing out a decode-sized matmul costs microseconds rather than a thread spawn.
/// Tasks are claimed with a ticket that carries the job's epoch, so a late worker can never
/// run a task of a newer job with an older job's closure.
pub struct ThreadPool {
    shared: std::sync::Arc<PoolShared>,
    handles: Vec<std::thread::JoinHandle<()>>,
    workers: usize,
}

/// Ticket index of an epoch whose job is being published: nothing can be claimed.
const CLOSED: u64 = 0xffff_ffff;

struct PoolShared {
    /// The current job's closure (lifetime erased: `run` does not return before every task
    /// of its job has finished, so the closure outlives every use).
    job: std::sync::Mutex<Option<&'static (dyn Fn(usize) + Sync)>>,
    /// epoch << 32 | next task index.
    ticket: std::sync::atomic::AtomicU64,
    tasks: std::sync::atomic::AtomicUsize,
    done: std::sync::atomic::AtomicUsize,
    stop: std::sync::atomic::AtomicBool,
}

impl PoolShared {
    /// Claims and runs tasks of `epoch` until none is left.
    fn work(&self, epoch: u64, f: &(dyn Fn(usize) + Sync)) {
        use std::sync::atomic::Ordering::*;
        loop {
            let t = self.ticket.load(Acquire);
            if t >> 32 != epoch || t & 0xffff_ffff == CLOSED {
                return;
            }
            // `tasks` was published before the epoch opened and is only changed after a new
            // epoch has closed this one, when the CAS below can no longer succeed.
            let tasks = self.tasks.load(Acquire) as u64;
            if (t & 0xffff_ffff) >= tasks {
                return;
            }
            if self
                .ticket
                .compare_exchange_weak(t, t + 1, AcqRel, Acquire)
                .is_ok()
            {
                f((t & 0xffff_ffff) as usize);
                self.done.fetch_add(1, Release);
            }
        }
    }
}

impl ThreadPool {
    /// `threads` workers in total, the calling thread included.
    pub fn new(threads: usize) -> ThreadPool {
        use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
        let shared = std::sync::Arc::new(PoolShared {
            job: std::sync::Mutex::new(None),
            ticket: AtomicU64::new(0),
            tasks: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let handles = (1..threads.max(1))
            .map(|_| {
                let sh = shared.clone();
                std::thread::spawn(move || {
                    let mut seen = 0u64;
                    let mut idle = 0u32;
                    while !sh.stop.load(Relaxed) {
                        let t = sh.ticket.load(Acquire);
                        let epoch = t >> 32;
                        if epoch == seen || t & 0xffff_ffff == CLOSED {
                            idle += 1;
                            if idle < 2000 {
                                std::hint::spin_loop();
                            } else if idle < 4000 {
                                std::thread::yield_now();
                            } else {
                                std::thread::sleep(std::time::Duration::from_micros(50));
                            }
                            continue;
                        }
                        idle = 0;
                        seen = epoch;
                        let job = *sh.job.lock().unwrap_or_else(|e| e.into_inner());
                        if let Some(f) = job {
                            sh.work(epoch, f);
                        }
                    }
                })
            })
            .collect();
        ThreadPool {
            shared,
            handles,
            workers: threads.max(1),
        }
    }
}

impl inference::exec::Executor for ThreadPool {
    fn workers(&self) -> usize {
        self.workers
    }

    fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        use std::sync::atomic::Ordering::*;
        if self.workers == 1 || tasks <= 1 || tasks as u64 >= CLOSED {
            (0..tasks).for_each(f);
            return;
        }
        let sh = &self.shared;
        // SAFETY: the reference is only used until `done == tasks`, which this function waits
        // for before returning; afterwards no worker can claim a task of this epoch.
        let f_static: &'static (dyn Fn(usize) + Sync) = unsafe { std::mem::transmute(f) };
        let epoch = (sh.ticket.load(Acquire) >> 32) + 1;
        // Close the previous epoch before touching `tasks` (see `PoolShared::work`).
        sh.ticket.store((epoch << 32) | CLOSED, Release);
        *sh.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(f_static);
        sh.tasks.store(tasks, Release);
        sh.done.store(0, Release);
        sh.ticket.store(epoch << 32, Release);
        sh.work(epoch, f);
        while sh.done.load(Acquire) < tasks {
            std::hint::spin_loop();
        }
        *sh.job.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared
            .stop
            .store(true, std::sync::atomic::Ordering::Relaxed);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inference::exec::Executor;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn pool_runs_every_task_exactly_once_across_many_jobs() {
        let pool = ThreadPool::new(3);
        for job in 0..2000usize {
            let tasks = 1 + job % 7;
            let hits: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
            pool.run(tasks, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(
                hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                "job {job}"
            );
        }
        assert_eq!(pool.workers(), 3);
    }
}
