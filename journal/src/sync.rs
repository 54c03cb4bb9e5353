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
///
/// An item may be queued *reserved* for its producer ([`WorkQueue::push_reserved`]):
/// consumers pass over it until it is released, the producer may [`WorkQueue::take`] it
/// back, and once the queue is closed consumers get it like any other.
#[derive(Debug)]
pub(crate) struct WorkQueue<T> {
    state: Mutex<QueueState<T>>,
    cv: Condvar,
    /// How many queued items are reserved, kept beside the lock so that releasing when
    /// nothing is reserved (every append does) does not take it.
    reserved: AtomicU64,
}

#[derive(Debug)]
struct QueueState<T> {
    /// Items in order, each with whether it is reserved.
    items: VecDeque<(T, bool)>,
    closed: bool,
}

impl<T> WorkQueue<T> {
    pub(crate) fn new() -> Self {
        WorkQueue {
            state: Mutex::new(QueueState {
                items: VecDeque::new(),
                closed: false,
            }),
            cv: Condvar::new(),
            reserved: AtomicU64::new(0),
        }
    }

    /// Queue `t`; gives it back if the queue is closed.
    pub(crate) fn push(&self, t: T) -> Result<(), T> {
        self.enqueue(t, false)
    }

    /// Queue `t` reserved: no consumer gets it until [`WorkQueue::release`] or
    /// [`WorkQueue::release_all`] (or close). Gives it back if the queue is closed.
    pub(crate) fn push_reserved(&self, t: T) -> Result<(), T> {
        self.enqueue(t, true)
    }

    fn enqueue(&self, t: T, reserved: bool) -> Result<(), T> {
        let mut s = relock(&self.state);
        if s.closed {
            return Err(t);
        }
        s.items.push_back((t, reserved));
        if reserved {
            self.reserved.fetch_add(1, Ordering::SeqCst);
        } else {
            self.cv.notify_one();
        }
        Ok(())
    }

    /// Hand the first reserved item that `pred` accepts to the consumers.
    pub(crate) fn release(&self, pred: impl Fn(&T) -> bool) {
        self.unreserve(pred, 1);
    }

    /// Hand every reserved item to the consumers.
    pub(crate) fn release_all(&self) {
        self.unreserve(|_| true, usize::MAX);
    }

    /// Clear the reservations of up to `limit` reserved items `pred` accepts, in queue
    /// order, in one pass under one lock.
    fn unreserve(&self, pred: impl Fn(&T) -> bool, limit: usize) {
        if self.reserved.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut s = relock(&self.state);
        let mut n = 0;
        for item in s
            .items
            .iter_mut()
            .filter(|(t, r)| *r && pred(t))
            .take(limit)
        {
            item.1 = false;
            n += 1;
        }
        if n > 0 {
            self.reserved.fetch_sub(n as u64, Ordering::SeqCst);
            if n == 1 {
                self.cv.notify_one();
            } else {
                self.cv.notify_all();
            }
        }
    }

    /// The next item not reserved (any item, once closed); `None` once the queue is
    /// closed and drained.
    pub(crate) fn pop(&self) -> Option<T> {
        let mut s = relock(&self.state);
        loop {
            let closed = s.closed;
            if let Some(i) = s.items.iter().position(|(_, r)| closed || !r) {
                return s.items.remove(i).map(|t| self.dequeued(t));
            }
            if closed {
                return None;
            }
            s = rewait(&self.cv, s);
        }
    }

    /// Remove and return the first queued item that `pred` accepts, reserved or not,
    /// without waiting.
    pub(crate) fn take(&self, pred: impl Fn(&T) -> bool) -> Option<T> {
        let mut s = relock(&self.state);
        let i = s.items.iter().position(|(t, _)| pred(t))?;
        s.items.remove(i).map(|t| self.dequeued(t))
    }

    fn dequeued(&self, (t, reserved): (T, bool)) -> T {
        if reserved {
            self.reserved.fetch_sub(1, Ordering::SeqCst);
        }
        t
    }

    /// Refuse new items; consumers drain what is queued, reserved or not, then get `None`.
    pub(crate) fn close(&self) {
        relock(&self.state).closed = true;
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
    fn reserved_items_wait_for_release_take_or_close() {
        let q = WorkQueue::new();
        q.push_reserved(1).unwrap();
        q.push(2).unwrap();
        q.push_reserved(3).unwrap();
        q.push_reserved(4).unwrap();
        // Consumers pass over reserved items.
        assert_eq!(q.pop(), Some(2));
        // Released: a consumer gets it; taken back: nobody else does.
        q.release(|&i| i == 3);
        assert_eq!(q.pop(), Some(3));
        assert_eq!(q.take(|&i| i == 1), Some(1));
        q.push_reserved(5).unwrap();
        q.release_all();
        assert_eq!(q.pop(), Some(4));
        assert_eq!(q.pop(), Some(5));
        // Still reserved at close: consumers drain it.
        q.push_reserved(6).unwrap();
        q.close();
        assert_eq!(q.pop(), Some(6));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn release_wakes_a_waiting_consumer() {
        let q = Arc::new(WorkQueue::new());
        q.push_reserved(1).unwrap();
        let c = {
            let q = q.clone();
            std::thread::spawn(move || q.pop())
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        q.release(|&i| i == 1);
        assert_eq!(c.join().unwrap(), Some(1));
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
