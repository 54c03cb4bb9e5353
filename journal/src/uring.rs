//! The io_uring flush path: a batch's writes linked to its fdatasyncs, submitted with one
//! `io_uring_enter` per batch. Used when the kernel allows io_uring (probed per worker at start:
//! it may be compiled out or disabled by `kernel.io_uring_disabled`) and the files are real;
//! otherwise the workers use `pwrite` + `fdatasync` through [`crate::vfs`].

use io_uring::{opcode, squeue, types, IoUring};
use std::io;

/// Largest number of operations (writes + syncs) submitted as one chain.
const ENTRIES: u32 = 16;

/// One ring, owned by one worker thread.
pub(crate) struct Uring {
    ring: IoUring,
}

impl std::fmt::Debug for Uring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Uring")
    }
}

impl Uring {
    /// A ring, if the kernel supports the operations we need.
    pub(crate) fn new() -> Option<Self> {
        let ring = IoUring::new(ENTRIES).ok()?;
        let mut probe = io_uring::Probe::new();
        ring.submitter().register_probe(&mut probe).ok()?;
        if !probe.is_supported(opcode::Write::CODE) || !probe.is_supported(opcode::Fsync::CODE) {
            return None;
        }
        Some(Uring { ring })
    }

    /// Whether a batch of this shape fits one chain.
    pub(crate) fn fits(writes: usize, syncs: usize, max_len: usize) -> bool {
        writes + syncs <= ENTRIES as usize && max_len <= (1 << 30)
    }

    /// Write every `(fd, offset, bytes)` and then fdatasync every fd of `syncs`, as one linked
    /// chain: a failed or short write cancels what follows. Takes the buffers by value so they
    /// can be leaked, not freed, if the ring breaks with operations possibly still in flight.
    pub(crate) fn write_and_sync(
        &mut self,
        writes: Vec<(i32, u64, crate::aligned::AlignedBuf)>,
        syncs: &[i32],
    ) -> io::Result<()> {
        let n = writes.len() + syncs.len();
        if n == 0 {
            return Ok(());
        }
        {
            let mut sq = self.ring.submission();
            for (i, (fd, off, buf)) in writes.iter().enumerate() {
                let e = opcode::Write::new(types::Fd(*fd), buf.as_ptr(), buf.len() as u32)
                    .offset(*off)
                    .build()
                    .flags(squeue::Flags::IO_LINK)
                    .user_data(i as u64);
                // SAFETY: `buf` stays alive and unmoved until every completion of this chain has
                // been reaped below (or is leaked if the ring fails), and the fd stays open
                // because the caller holds the file for the duration of the call.
                unsafe { sq.push(&e) }.map_err(|_| io::Error::other("submission queue full"))?;
            }
            for (k, fd) in syncs.iter().enumerate() {
                let mut e = opcode::Fsync::new(types::Fd(*fd))
                    .flags(types::FsyncFlags::DATASYNC)
                    .build()
                    .user_data((writes.len() + k) as u64);
                if k + 1 < syncs.len() {
                    e = e.flags(squeue::Flags::IO_LINK);
                }
                // SAFETY: fsync carries no buffer; the fd stays open as above.
                unsafe { sq.push(&e) }.map_err(|_| io::Error::other("submission queue full"))?;
            }
        }
        let mut reaped = 0;
        let mut first_err: Option<io::Error> = None;
        while reaped < n {
            match self.ring.submit_and_wait(n - reaped) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Operations may still be in flight: never free their buffers.
                    std::mem::forget(writes);
                    return Err(e);
                }
            }
            for cqe in self.ring.completion() {
                reaped += 1;
                let i = cqe.user_data() as usize;
                let res = cqe.result();
                let err = if res < 0 {
                    Some(io::Error::from_raw_os_error(-res))
                } else {
                    match writes.get(i) {
                        Some((_, _, buf)) if res as usize != buf.len() => Some(io::Error::new(
                            io::ErrorKind::WriteZero,
                            format!("short write: {res} of {} bytes", buf.len()),
                        )),
                        _ => None,
                    }
                };
                if let Some(e) = err {
                    // The cause, not the cancellations it triggers down the chain.
                    let cancel = e.raw_os_error() == Some(libc::ECANCELED);
                    if first_err.is_none()
                        || (!cancel
                            && first_err
                                .as_ref()
                                .is_some_and(|f| f.raw_os_error() == Some(libc::ECANCELED)))
                    {
                        first_err = Some(e);
                    }
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}
