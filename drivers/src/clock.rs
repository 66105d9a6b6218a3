//! How the drivers' waiting loops tell time: one clock for every device that polls with a
//! deadline (a virtio-fs reply, vsock credit or data).

/// A time source, an idle hook and how long a wait may go without progress.
#[derive(Clone, Copy)]
pub struct Clock {
    /// Monotonic nanoseconds.
    pub now_ns: fn() -> u64,
    /// Called between empty polls (yield to other tasks, pause or sleep the CPU).
    pub idle: fn(),
    /// A wait that sees no progress for this long gives up.
    pub timeout_ns: u64,
}

impl Clock {
    pub fn now(&self) -> u64 {
        (self.now_ns)()
    }

    /// True when nothing has happened since `since` (a [`Clock::now`]) for longer than the
    /// timeout.
    pub fn expired(&self, since: u64) -> bool {
        self.now().saturating_sub(since) > self.timeout_ns
    }

    pub fn idle(&self) {
        (self.idle)()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::{AtomicU64, Ordering};

    static NOW: AtomicU64 = AtomicU64::new(0);

    fn now() -> u64 {
        NOW.load(Ordering::Relaxed)
    }

    fn tick() {
        NOW.fetch_add(10, Ordering::Relaxed);
    }

    #[test]
    fn expires_only_after_the_timeout() {
        let clock = Clock {
            now_ns: now,
            idle: tick,
            timeout_ns: 25,
        };
        let start = clock.now();
        clock.idle();
        clock.idle();
        assert!(!clock.expired(start), "20 ns waited of 25");
        clock.idle();
        assert!(clock.expired(start), "30 ns waited of 25");
        assert!(!clock.expired(clock.now()));
    }
}
