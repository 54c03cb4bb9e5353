//! The locks of the apply scheduler ([`crate::sched`]): std's, or shuttle's under the
//! `shuttle` feature, whose model tests then control every interleaving of them. Only
//! the scheduler uses these; with the feature on, nothing else in the crate may run
//! outside a shuttle test.

#[cfg(feature = "shuttle")]
pub(crate) use shuttle::sync::atomic::{AtomicBool, Ordering};
#[cfg(feature = "shuttle")]
pub(crate) use shuttle::sync::{Condvar, Mutex, MutexGuard};

#[cfg(not(feature = "shuttle"))]
pub(crate) use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(not(feature = "shuttle"))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};
