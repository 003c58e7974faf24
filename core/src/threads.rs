//! Threads that never take Postgres's signals: the HTTP pool's and the mail thread. They start
//! with every signal blocked, so SIGHUP and SIGTERM always reach the worker's main thread,
//! where Postgres's handlers may run.

use std::thread::JoinHandle;

/// Starts thread `name` running `f`, every signal blocked in it from its first instruction.
/// Blocking them in the new thread itself left a window at its start in which a signal could
/// land there, and Postgres's handler, run on a thread that is not Postgres's, aborted the
/// worker; so the caller's mask is blocked around the spawn (the thread inherits it) and
/// restored after.
pub fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> std::io::Result<JoinHandle<()>> {
    // SAFETY: plain libc calls on sets owned by this frame; the mask is restored before return.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut previous: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut previous);
        let spawned = std::thread::Builder::new().name(name).spawn(f);
        libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut());
        spawned
    }
}

/// The signals a thread of this process blocks, from /proc ("SigBlk", hexadecimal); None once
/// it has ended.
#[cfg(test)]
pub(crate) fn blocked_signals(tid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("SigBlk:"))?;
    u64::from_str_radix(line["SigBlk:".len()..].trim(), 16).ok()
}
