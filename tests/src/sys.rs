//! The only `unsafe` of this crate: sending a signal to a process id.
//!
//! `std::process::Child::kill` can only send SIGKILL, and only to our own
//! children; stopping a ctdbd politely needs SIGTERM, and cleaning up its
//! helpers (eventd, recoverd) needs signals to processes we did not spawn.

/// Send `signal` to `pid`. Returns false if the process does not exist (or
/// the pid does not fit a `pid_t`).
pub fn send_signal(pid: u32, signal: i32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        // 0 and negative values address process groups; never do that.
        return false;
    }
    // SAFETY: kill(2) takes two integers and touches no memory of ours; a
    // positive pid addresses exactly one process.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// SIGTERM, for callers that do not want to depend on libc themselves.
pub const SIGTERM: i32 = libc::SIGTERM;
/// SIGKILL.
pub const SIGKILL: i32 = libc::SIGKILL;
