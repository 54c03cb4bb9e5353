//! The suite every ObjectStore backend runs unchanged.
//!
//! - [`conformance`]: hand-written cases pinning Ceph's ObjectStore semantics; a backend's
//!   test file is one [`conformance_tests!`] call.
//! - [`model`]: an independent in-memory model of the same semantics and a seeded random
//!   driver comparing a store against it step by step; one [`model_tests!`] call.
//! - [`crash`]: the process-kill test and the simulated-disk crash-point test;
//! - [`faults`]: I/O errors injected at every call of a workload on the simulated disk;
//! - [`harness`]: store factories, scratch directories, remount, handles.
//! - [`state`]: the observable state of a store, captured through the public API only.
//! - [`rng`]: a tiny deterministic generator, so a printed seed replays forever.

pub mod conformance;
pub mod coverage;
pub mod crash;
pub mod faults;
pub mod faulty;
pub mod harness;
pub mod model;
pub mod rng;
pub mod state;

pub use harness::{factory, StoreFactory, TestStore};
