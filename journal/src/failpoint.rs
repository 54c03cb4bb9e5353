//! Named failpoints: places where a test can make the process crash (or an I/O call
//! fail) at an exact moment of a multi-step durable update: checkpoint, journal
//! rotation, trim, mkfs, superblock update, the atomic rename.
//!
//! Compiled in only with the `failpoints` cargo feature (off by default, so never in a
//! release build); without it [`hit`] is an empty inline function.
//!
//! A failpoint is armed either in-process with [`arm`] or, for a child process, through
//! the environment variable `OSTORE_FAILPOINTS`, read at the first hit:
//! `name=N[:action],name2=M[:action]` fires on the N-th hit (1-based) of `name`;
//! `action` is `abort` (default: the process dies on the spot, as a crash would, with
//! unsynced data in the page cache and no destructor run), `error` (the call returns
//! an I/O error, which the store must turn into a fail-stop), `pauseMS` (the thread
//! sleeps MS milliseconds, to hold a race window open) or `panic` (the thread panics,
//! as a bug would: the store must fail stop, not hang).
//!
//! Besides the crash points of [`ALL`], four points exist only for targeted tests:
//! `journaling.after_append` (a submitter between its append and the record of its
//! volume), `journaling.after_commit` (a journal thread between an entry's `on_commit`
//! and queueing its apply), `apply.entry` (an apply worker about to apply an entry) and
//! `journal.flush` (a journal worker about to write and sync a batch: holds entries
//! appended but not durable).

use std::io;

/// The environment variable a child process reads its failpoints from.
pub const ENV: &str = "OSTORE_FAILPOINTS";

/// Every failpoint the stores define, so a test can iterate over them.
pub const ALL: &[&str] = &[
    // Journal: between writing a volume's TOC and opening the next volume.
    "journal.rotate",
    // Journal: between recycling two volumes during a trim.
    "journal.trim",
    // Checkpoint: after the backend made its state durable, before the checkpoint file.
    "checkpoint.after_backend",
    // Checkpoint: after the checkpoint file, before the journal is trimmed.
    "checkpoint.before_trim",
    // mkfs: after the backend is formatted, before the journal is created.
    "mkfs.after_backend",
    // mkfs: after the journal is created, before the superblock.
    "mkfs.before_superblock",
    // The superblock (and other whole-file updates of the os crate): after the temp file
    // is synced, before the rename.
    "superblock.before_rename",
    // Any atomic file (checkpoint, superblock, journal info, backend config): after the
    // temp file is synced, before the rename.
    "atomic.before_rename",
    // Any atomic file: after the rename, before the directory fsync.
    "atomic.before_dir_sync",
];

/// What an armed failpoint does when it fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `std::process::abort()`: a crash at this exact point.
    Abort,
    /// The call returns an I/O error.
    Error,
    /// The thread sleeps this many milliseconds, then goes on: widens a race window
    /// so a test can make the interleaving it needs.
    Pause(u64),
    /// The thread panics: stands for a bug in the code that passes the point.
    Panic,
}

#[cfg(feature = "failpoints")]
mod imp {
    use super::Action;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Mutex, OnceLock};

    /// name -> (hits so far, fire at hit, action)
    type Table = HashMap<String, (u64, u64, Action)>;

    static ARMED: AtomicBool = AtomicBool::new(false);

    pub(super) fn table() -> &'static Mutex<Table> {
        static T: OnceLock<Mutex<Table>> = OnceLock::new();
        T.get_or_init(|| {
            let mut t = Table::new();
            if let Ok(spec) = std::env::var(super::ENV) {
                for (name, n, a) in super::parse(&spec).unwrap_or_default() {
                    t.insert(name, (0, n, a));
                }
            }
            if !t.is_empty() {
                ARMED.store(true, Ordering::SeqCst);
            }
            Mutex::new(t)
        })
    }

    pub(super) fn arm(name: &str, nth: u64, action: Action) {
        let mut t = table().lock().unwrap_or_else(|e| e.into_inner());
        t.insert(name.to_string(), (0, nth, action));
        ARMED.store(true, Ordering::SeqCst);
    }

    pub(super) fn disarm_all() {
        table().lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub(super) fn hit(name: &str) -> Option<Action> {
        // The first call builds the table, which reads OSTORE_FAILPOINTS and arms.
        let t = table();
        if !ARMED.load(Ordering::Relaxed) {
            return None;
        }
        let mut t = t.lock().unwrap_or_else(|e| e.into_inner());
        let e = t.get_mut(name)?;
        e.0 += 1;
        if e.0 == e.1 {
            Some(e.2)
        } else {
            None
        }
    }
}

/// Parses an `OSTORE_FAILPOINTS` value.
pub fn parse(spec: &str) -> Result<Vec<(String, u64, Action)>, String> {
    let mut out = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, rest) = item.split_once('=').ok_or_else(|| {
            format!("failpoint {item:?}: expected name=N[:abort|error|pauseMS|panic]")
        })?;
        let (n, action) = match rest.split_once(':') {
            Some((n, "abort")) => (n, Action::Abort),
            Some((n, "error")) => (n, Action::Error),
            Some((n, "panic")) => (n, Action::Panic),
            Some((n, a)) if a.starts_with("pause") => match a["pause".len()..].parse() {
                Ok(ms) => (n, Action::Pause(ms)),
                Err(_) => return Err(format!("failpoint {name}: bad pause {a:?}")),
            },
            Some((_, a)) => return Err(format!("failpoint {name}: unknown action {a:?}")),
            None => (rest, Action::Abort),
        };
        let n: u64 =
            n.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                format!("failpoint {name}: hit count {n:?} is not a positive number")
            })?;
        out.push((name.to_string(), n, action));
    }
    Ok(out)
}

/// Passes a point inside a critical section, where an error cannot be returned: an
/// armed `abort`, `pause` or `panic` acts as in [`hit`]; an armed `error` is ignored.
#[inline]
pub fn pause(name: &str) {
    let _ = hit(name);
}

/// Whether failpoints are compiled in.
pub const ENABLED: bool = cfg!(feature = "failpoints");

/// Arms `name` to fire on its `nth` next hit (1-based). A no-op without the feature.
pub fn arm(name: &str, nth: u64, action: Action) {
    #[cfg(feature = "failpoints")]
    imp::arm(name, nth, action);
    #[cfg(not(feature = "failpoints"))]
    let _ = (name, nth, action);
}

/// Disarms every failpoint of this process.
pub fn disarm_all() {
    #[cfg(feature = "failpoints")]
    imp::disarm_all();
}

/// Passes failpoint `name`: aborts the process or returns an error when it is armed and
/// this is the hit it waits for.
#[inline]
pub fn hit(name: &str) -> io::Result<()> {
    #[cfg(feature = "failpoints")]
    match imp::hit(name) {
        None => {}
        Some(Action::Abort) => {
            eprintln!("failpoint {name}: abort");
            std::process::abort();
        }
        Some(Action::Error) => {
            return Err(io::Error::other(format!(
                "injected failure at failpoint {name}"
            )));
        }
        Some(Action::Pause(ms)) => std::thread::sleep(std::time::Duration::from_millis(ms)),
        Some(Action::Panic) => panic!("failpoint {name}: panic"),
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_are_refused() {
        assert_eq!(
            parse("journal.rotate=2,mkfs.after_backend=1:error").unwrap(),
            vec![
                ("journal.rotate".to_string(), 2, Action::Abort),
                ("mkfs.after_backend".to_string(), 1, Action::Error)
            ]
        );
        assert!(parse("x").unwrap_err().contains("expected name=N"));
        assert!(parse("x=0").unwrap_err().contains("positive"));
        assert!(parse("x=1:boom").unwrap_err().contains("unknown action"));
        assert_eq!(
            parse("x=3:pause250").unwrap(),
            vec![("x".to_string(), 3, Action::Pause(250))]
        );
        assert!(parse("x=1:pausea").unwrap_err().contains("bad pause"));
        assert!(parse("").unwrap().is_empty());
    }

    #[cfg(feature = "failpoints")]
    #[test]
    fn an_armed_error_fires_once_on_its_hit() {
        arm("test.point", 2, Action::Error);
        assert!(hit("test.point").is_ok());
        assert!(hit("test.point").is_err());
        assert!(hit("test.point").is_ok());
        disarm_all();
    }
}
