//! A minimal spin lock (the kernel runs on one CPU with interrupts off, so
//! contention only comes from re-entrancy, which `try_lock` lets callers detect),
//! and [`WriteOnce`], the cell for values the boot CPU sets once and every
//! reader then shares (CPU features, boot facts).

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// A value set once (by the boot path) and read-only afterwards, readable from
/// any CPU without a lock. `set` publishes with release ordering, `get`
/// observes with acquire, so a reader that sees the value sees all of it.
pub struct WriteOnce<T> {
    state: AtomicU8,
    value: UnsafeCell<Option<T>>,
}

const EMPTY: u8 = 0;
const WRITING: u8 = 1;
const READY: u8 = 2;

// SAFETY: the value is written once, before `state` becomes READY (release), and
// only read after READY was observed (acquire); it is never written again.
unsafe impl<T: Send + Sync> Sync for WriteOnce<T> {}

impl<T> WriteOnce<T> {
    pub const fn new() -> Self {
        Self {
            state: AtomicU8::new(EMPTY),
            value: UnsafeCell::new(None),
        }
    }

    /// Stores `v` if nothing was stored yet; otherwise hands it back.
    pub fn set(&self, v: T) -> Result<(), T> {
        if self
            .state
            .compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(v);
        }
        // SAFETY: the EMPTY -> WRITING exchange gives this call sole access; no
        // reader looks at `value` before READY.
        unsafe { *self.value.get() = Some(v) };
        self.state.store(READY, Ordering::Release);
        Ok(())
    }

    /// The stored value, `None` until [`set`](Self::set) has finished.
    pub fn get(&self) -> Option<&T> {
        if self.state.load(Ordering::Acquire) != READY {
            return None;
        }
        // SAFETY: READY: written once and never again.
        unsafe { (*self.value.get()).as_ref() }
    }
}

impl<T> Default for WriteOnce<T> {
    fn default() -> Self {
        Self::new()
    }
}

pub struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` is serialised by `locked`.
unsafe impl<T: Send> Sync for SpinLock<T> {}
unsafe impl<T: Send> Send for SpinLock<T> {}

pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> SpinLock<T> {
    pub const fn new(value: T) -> Self {
        Self {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    pub fn lock(&self) -> SpinGuard<'_, T> {
        loop {
            if let Some(g) = self.try_lock() {
                return g;
            }
            while self.locked.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }
    }

    pub fn try_lock(&self) -> Option<SpinGuard<'_, T>> {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| SpinGuard { lock: self })
    }
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: we hold the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: we hold the lock.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_once_keeps_the_first_value() {
        let c = WriteOnce::new();
        assert_eq!(c.get(), None);
        assert_eq!(c.set(7), Ok(()));
        assert_eq!(c.set(8), Err(8));
        assert_eq!(c.get(), Some(&7));
    }

    #[test]
    fn write_once_readers_see_all_or_nothing() {
        let c = std::sync::Arc::new(WriteOnce::<[u64; 8]>::new());
        let r = {
            let c = c.clone();
            std::thread::spawn(move || loop {
                if let Some(v) = c.get() {
                    assert_eq!(*v, [42; 8]);
                    return;
                }
                std::hint::spin_loop();
            })
        };
        c.set([42; 8]).unwrap();
        r.join().unwrap();
    }

    #[test]
    fn excludes_and_releases() {
        let l = SpinLock::new(1);
        {
            let mut g = l.lock();
            *g += 1;
            assert!(l.try_lock().is_none());
        }
        assert_eq!(*l.try_lock().unwrap(), 2);
    }

    #[test]
    fn threads_count_correctly() {
        let l = std::sync::Arc::new(SpinLock::new(0u64));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        *l.lock() += 1;
                    }
                })
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(*l.lock(), 40_000);
    }
}
