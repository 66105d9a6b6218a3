//! A small persistent std-thread executor for host benchmarks: workers spin on a job counter
//! (then yield), so dispatching a decode-sized matmul costs well under a microsecond instead
//! of a thread spawn.

use inference::exec::Executor;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

type Job = &'static (dyn Fn(usize) + Sync);

struct Shared {
    job: Mutex<Option<Job>>,
    generation: AtomicUsize,
    tasks: AtomicUsize,
    next: AtomicUsize,
    /// Workers (other than the caller) that finished the current generation.
    finished: AtomicUsize,
    quit: AtomicBool,
}

pub struct SpinPool {
    shared: Arc<Shared>,
    workers: usize,
    handles: Vec<JoinHandle<()>>,
}

impl SpinPool {
    /// `workers` including the calling thread.
    pub fn new(workers: usize) -> SpinPool {
        let shared = Arc::new(Shared {
            job: Mutex::new(None),
            generation: AtomicUsize::new(0),
            tasks: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            quit: AtomicBool::new(false),
        });
        let handles = (1..workers.max(1))
            .map(|_| {
                let sh = shared.clone();
                std::thread::spawn(move || {
                    let mut seen = 0;
                    loop {
                        let mut spins = 0u32;
                        while sh.generation.load(Ordering::Acquire) == seen {
                            if sh.quit.load(Ordering::Relaxed) {
                                return;
                            }
                            spins += 1;
                            if spins > 20_000 {
                                std::thread::yield_now();
                            } else {
                                std::hint::spin_loop();
                            }
                        }
                        seen = sh.generation.load(Ordering::Acquire);
                        let job = sh.job.lock().unwrap().expect("job published");
                        work(&sh, job);
                        sh.finished.fetch_add(1, Ordering::AcqRel);
                    }
                })
            })
            .collect();
        SpinPool {
            shared,
            workers: workers.max(1),
            handles,
        }
    }
}

fn work(sh: &Shared, job: Job) {
    let tasks = sh.tasks.load(Ordering::Acquire);
    loop {
        let i = sh.next.fetch_add(1, Ordering::AcqRel);
        if i >= tasks {
            break;
        }
        job(i);
    }
}

impl Executor for SpinPool {
    fn workers(&self) -> usize {
        self.workers
    }

    fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        if self.workers == 1 {
            (0..tasks).for_each(f);
            return;
        }
        // SAFETY: every worker runs each generation exactly once and we wait for all of them
        // to report back before returning, so the borrow outlives every use of the job.
        let job: Job = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(f) };
        let sh = &*self.shared;
        *sh.job.lock().unwrap() = Some(job);
        sh.tasks.store(tasks, Ordering::Release);
        sh.next.store(0, Ordering::Release);
        sh.finished.store(0, Ordering::Release);
        sh.generation.fetch_add(1, Ordering::AcqRel);
        work(sh, job);
        while sh.finished.load(Ordering::Acquire) < self.workers - 1 {
            std::hint::spin_loop();
        }
    }
}

impl Drop for SpinPool {
    fn drop(&mut self) {
        self.shared.quit.store(true, Ordering::Relaxed);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}
