//! How a polling loop waits when a poll found no work.
//!
//! Devices are polled (see [`crate::vsock`]), so an idle server must still look at its
//! queues now and then; the question is only how often. [`IdleBackoff`] spins for a short
//! while after the last work (a reply or the next frame of a burst comes within
//! microseconds), then sleeps in slices that double from `min_sleep_ns` up to
//! `max_sleep_ns`. With `spin_ns >= min_sleep_ns` a slice is never longer than the idle time
//! so far, so the latency added to a request is at most as long as the server had been idle,
//! and never more than `max_sleep_ns`; a server idle for seconds wakes only `1 / max_sleep_ns` times a second.
//!
//! Two users: the MCP serve loop, which knows when a poll found work ([`IdleBackoff::work`]),
//! and the drivers' in-request hook (the kernel's `devices::idle`, between empty polls for a
//! virtio-fs reply or vsock credit), which only hears about empty polls: it uses
//! [`IdleBackoff::with_work_gap`], where a gap between the end of one wait and the next
//! empty poll counts as work done in between.

/// What to do after an empty poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleWait {
    /// Poll again at once (a `spin_loop` hint).
    Spin,
    /// Sleep up to this many nanoseconds (`arch::cpu::idle`), then poll.
    Sleep(u64),
}

#[derive(Debug, Clone)]
pub struct IdleBackoff {
    spin_ns: u64,
    min_sleep_ns: u64,
    max_sleep_ns: u64,
    /// When the current run of empty polls began; `None` right after work.
    idle_since_ns: Option<u64>,
    next_sleep_ns: u64,
    /// With a work gap: a poll this long after the previous wait ended starts a new run.
    work_gap_ns: Option<u64>,
    last_wait_end_ns: Option<u64>,
}

impl IdleBackoff {
    /// `max_sleep_ns` below `min_sleep_ns` is raised to it.
    pub const fn new(spin_ns: u64, min_sleep_ns: u64, max_sleep_ns: u64) -> Self {
        let max_sleep_ns = if max_sleep_ns < min_sleep_ns {
            min_sleep_ns
        } else {
            max_sleep_ns
        };
        Self {
            spin_ns,
            min_sleep_ns,
            max_sleep_ns,
            idle_since_ns: None,
            next_sleep_ns: min_sleep_ns,
            work_gap_ns: None,
            last_wait_end_ns: None,
        }
    }

    /// For a caller that never calls [`work`](Self::work): an empty poll more than
    /// `gap_ns` after the previous wait ended (reported with [`waited`](Self::waited))
    /// means the caller was busy in between, so a new idle run starts.
    pub const fn with_work_gap(mut self, gap_ns: u64) -> Self {
        self.work_gap_ns = Some(gap_ns);
        self
    }

    /// The wait [`wait`](Self::wait) asked for ended at `now_ns`.
    pub fn waited(&mut self, now_ns: u64) {
        self.last_wait_end_ns = Some(now_ns);
    }

    pub fn max_sleep_ns(&self) -> u64 {
        self.max_sleep_ns
    }

    /// A poll found work: the next empty poll starts a new idle run.
    pub fn work(&mut self) {
        self.idle_since_ns = None;
        self.next_sleep_ns = self.min_sleep_ns;
    }

    /// A poll at `now_ns` found nothing: how to wait before the next one.
    pub fn wait(&mut self, now_ns: u64) -> IdleWait {
        if let (Some(gap), Some(end)) = (self.work_gap_ns, self.last_wait_end_ns) {
            if now_ns.saturating_sub(end) > gap {
                self.work();
            }
        }
        let since = *self.idle_since_ns.get_or_insert(now_ns);
        if now_ns.saturating_sub(since) < self.spin_ns {
            return IdleWait::Spin;
        }
        let slice = self.next_sleep_ns;
        self.next_sleep_ns = slice.saturating_mul(2).min(self.max_sleep_ns);
        IdleWait::Sleep(slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: u64 = 1_000;
    const MS: u64 = 1_000_000;

    /// Feeds `wait` with a clock that advances by what each wait costs (spins cost
    /// `spin_cost`); returns the waits.
    fn run(b: &mut IdleBackoff, start: u64, spin_cost: u64, n: usize) -> (Vec<IdleWait>, u64) {
        let mut now = start;
        let mut out = Vec::new();
        for _ in 0..n {
            let w = b.wait(now);
            now += match w {
                IdleWait::Spin => spin_cost,
                IdleWait::Sleep(ns) => ns,
            };
            out.push(w);
        }
        (out, now)
    }

    #[test]
    fn spins_first_then_doubles_up_to_the_cap() {
        let mut b = IdleBackoff::new(MS, 200 * US, 5 * MS);
        let (waits, _) = run(&mut b, 7 * MS, 100 * US, 16);
        // 1 ms of spinning at 100 us per poll: ten spins.
        assert!(
            waits[..10].iter().all(|w| *w == IdleWait::Spin),
            "{waits:?}"
        );
        let sleeps: Vec<u64> = waits[10..]
            .iter()
            .map(|w| match w {
                IdleWait::Sleep(ns) => *ns,
                IdleWait::Spin => panic!("spin after sleeping: {waits:?}"),
            })
            .collect();
        assert_eq!(
            sleeps,
            [200 * US, 400 * US, 800 * US, 1600 * US, 3200 * US, 5 * MS]
        );
    }

    #[test]
    fn a_slice_never_exceeds_the_idle_time_so_far() {
        let mut b = IdleBackoff::new(MS, 200 * US, 50 * MS);
        let start = 3 * MS;
        let mut now = start;
        for _ in 0..200 {
            let w = b.wait(now);
            if let IdleWait::Sleep(ns) = w {
                assert!(ns <= now - start, "slice {ns} after {} idle", now - start);
                now += ns;
            } else {
                now += 10 * US;
            }
        }
        assert_eq!(b.wait(now), IdleWait::Sleep(50 * MS));
    }

    #[test]
    fn work_restarts_with_spinning_and_the_shortest_slice() {
        let mut b = IdleBackoff::new(MS, 200 * US, 10 * MS);
        let (_, now) = run(&mut b, 0, 50 * US, 40);
        assert_eq!(b.wait(now), IdleWait::Sleep(10 * MS));
        b.work();
        assert_eq!(b.wait(now + MS), IdleWait::Spin);
        assert_eq!(b.wait(now + 2 * MS), IdleWait::Sleep(200 * US));
        assert_eq!(b.wait(now + 3 * MS), IdleWait::Sleep(400 * US));
    }

    #[test]
    fn no_spin_phase_and_cap_below_minimum() {
        let mut b = IdleBackoff::new(0, MS, 10);
        assert_eq!(b.max_sleep_ns(), MS);
        assert_eq!(b.wait(0), IdleWait::Sleep(MS));
        assert_eq!(b.wait(MS), IdleWait::Sleep(MS));
    }

    #[test]
    fn work_gap_restarts_a_run_the_caller_did_not_report() {
        // The in-request policy: spin 1 ms, then 200 us slices; a 20 us gap is work.
        let mut b = IdleBackoff::new(MS, 200 * US, 200 * US).with_work_gap(20 * US);
        let mut now = 0;
        let mut spins = 0;
        loop {
            match b.wait(now) {
                IdleWait::Spin => spins += 1,
                IdleWait::Sleep(ns) => {
                    assert_eq!(ns, 200 * US);
                    break;
                }
            }
            now += 10 * US; // a poll, back-to-back: within the gap
            b.waited(now);
        }
        assert_eq!(spins, 100, "1 ms of 10 us polls");
        now += 200 * US;
        b.waited(now);
        assert_eq!(b.wait(now + 5 * US), IdleWait::Sleep(200 * US));
        b.waited(now + 205 * US);
        // The caller went off and did something for 1 ms: spinning again.
        assert_eq!(b.wait(now + 1205 * US), IdleWait::Spin);
        // Without `with_work_gap`, gaps mean nothing.
        let mut plain = IdleBackoff::new(MS, 200 * US, 200 * US);
        assert_eq!(plain.wait(0), IdleWait::Spin);
        plain.waited(10 * US);
        assert_eq!(plain.wait(2 * MS), IdleWait::Sleep(200 * US));
    }

    #[test]
    fn a_clock_going_backwards_does_not_underflow() {
        let mut b = IdleBackoff::new(MS, 200 * US, 5 * MS);
        assert_eq!(b.wait(10 * MS), IdleWait::Spin);
        assert_eq!(b.wait(5 * MS), IdleWait::Spin);
        assert_eq!(b.wait(u64::MAX), IdleWait::Sleep(200 * US));
    }
}
