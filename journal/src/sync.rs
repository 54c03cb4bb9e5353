//! The journal writer's threads and locks: std's, or shuttle's under the `shuttle` feature,
//! whose model tests (`journal::model`) then control every interleaving of appenders, flush
//! workers, the blank maker, trim and shutdown. With the feature on, the writer runs only
//! inside a shuttle test. The simulated disk keeps std's locks: it never blocks while
//! holding one, so shuttle need not see them.

#[cfg(feature = "shuttle")]
pub(crate) use shuttle::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(feature = "shuttle")]
pub(crate) use shuttle::sync::{Condvar, Mutex, MutexGuard};
#[cfg(feature = "shuttle")]
pub(crate) use shuttle::thread::{Builder, JoinHandle};

#[cfg(not(feature = "shuttle"))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(not(feature = "shuttle"))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(feature = "shuttle"))]
pub(crate) use std::thread::{Builder, JoinHandle};

use std::collections::VecDeque;

/// Lock `m` even if a holder panicked: a panic in a user callback must not wedge every later
/// append.
pub(crate) fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Wait on `cv`, ignoring poison as [`relock`] does.
pub(crate) fn rewait<'a, T>(cv: &Condvar, g: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cv.wait(g).unwrap_or_else(|e| e.into_inner())
}

/// A closable multi-consumer FIFO: sealed batches on their way to the flush workers. Built
/// on the facade's lock so the model tests see every hand-off (a channel crate's internals
/// would be invisible to shuttle).
#[derive(Debug)]
pub(crate) struct WorkQueue<T> {
    state: Mutex<(VecDeque<T>, bool)>,
    cv: Condvar,
}

impl<T> WorkQueue<T> {
    pub(crate) fn new() -> Self {
        WorkQueue {
            state: Mutex::new((VecDeque::new(), false)),
            cv: Condvar::new(),
        }
    }

    /// Queue `t`; gives it back if the queue is closed.
    pub(crate) fn push(&self, t: T) -> Result<(), T> {
        let mut s = relock(&self.state);
        if s.1 {
            return Err(t);
        }
        s.0.push_back(t);
        self.cv.notify_one();
        Ok(())
    }

    /// Queue `t` without waking a consumer (one already awake takes it as usual); see
    /// [`WorkQueue::nudge`]. Gives it back if the queue is closed.
    pub(crate) fn push_quiet(&self, t: T) -> Result<(), T> {
        let mut s = relock(&self.state);
        if s.1 {
            return Err(t);
        }
        s.0.push_back(t);
        Ok(())
    }

    /// Wake one consumer for an item queued by [`WorkQueue::push_quiet`].
    pub(crate) fn nudge(&self) {
        let _s = relock(&self.state);
        self.cv.notify_one();
    }

    /// The next item; `None` once the queue is closed and drained.
    pub(crate) fn pop(&self) -> Option<T> {
        let mut s = relock(&self.state);
        loop {
            if let Some(t) = s.0.pop_front() {
                return Some(t);
            }
            if s.1 {
                return None;
            }
            s = rewait(&self.cv, s);
        }
    }

    /// Remove and return the first queued item that `pred` accepts, without waiting.
    pub(crate) fn take(&self, pred: impl Fn(&T) -> bool) -> Option<T> {
        let mut s = relock(&self.state);
        let i = s.0.iter().position(pred)?;
        s.0.remove(i)
    }

    /// Refuse new items; consumers drain what is queued, then get `None`.
    pub(crate) fn close(&self) {
        relock(&self.state).1 = true;
        self.cv.notify_all();
    }
}

#[cfg(all(test, not(feature = "shuttle")))]
mod tests {
    use super::WorkQueue;
    use std::sync::Arc;

    #[test]
    fn queue_delivers_in_order_then_drains_after_close() {
        let q = WorkQueue::new();
        q.push(1).unwrap();
        q.push(2).unwrap();
        q.close();
        assert_eq!(q.push(3), Err(3));
        assert_eq!(q.pop(), Some(1));
        assert_eq!(q.pop(), Some(2));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn take_removes_the_first_match_only() {
        let q = WorkQueue::new();
        for i in [1, 2, 3, 2] {
            q.push(i).unwrap();
        }
        assert_eq!(q.take(|&i| i == 2), Some(2));
        assert_eq!(q.take(|&i| i == 7), None);
        assert_eq!(q.pop(), Some(1));
        assert_eq!(q.pop(), Some(3));
        assert_eq!(q.pop(), Some(2));
    }

    #[test]
    fn close_wakes_a_waiting_consumer() {
        let q = Arc::new(WorkQueue::<u8>::new());
        let c = {
            let q = q.clone();
            std::thread::spawn(move || q.pop())
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        q.close();
        assert_eq!(c.join().unwrap(), None);
    }
}
