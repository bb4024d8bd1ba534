//! Start-up self-protection: the daemon must keep working while memory is
//! exhausted, so it locks itself in RAM, pre-faults its stack, opts out of
//! the kernel OOM killer and asks for CPU priority. Each step that is
//! refused logs once; the daemon carries on without it. It also says
//! whether compaction may move its locked pages, which only the system
//! can forbid (`init/lmkd.rc` does).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};

/// Set once `mlockall` succeeded: only then is there a locking mode for
/// [`spawn_demand_paged`] to switch (tests never lock their process).
static LOCKED: AtomicBool = AtomicBool::new(false);

/// Stack the core thread may touch below the daemon's start-up frame;
/// pre-faulted (and so locked) so a deep call never needs a new page
/// under pressure, and the rest of the initial stack is handed back after
/// start-up (`residency::trim`). Measured in a release build: the whole
/// run under real pressure, kills, reloads and a watchdog kill reached 76
/// kB from the top of the stack, of which the frames down to the daemon's
/// are about 24 kB; in the VM ladder the core stayed within 16 kB of that
/// frame. 64 kB covers the deepest with a fifth to spare.
pub const CORE_STACK: usize = 64 * 1024;

/// What was achieved, for the start-up log and tests.
#[derive(Clone, Copy, Debug, Default)]
pub struct Protection {
    pub locked: bool,
    pub oom_adj: bool,
    pub priority: bool,
    /// Compaction leaves locked pages in place
    /// (`vm.compact_unevictable_allowed` = 0); None if unreadable.
    pub pinned: Option<bool>,
}

/// The sysctl that lets compaction move mlocked pages (kernel default 1).
const COMPACT_UNEVICTABLE: &str = "/proc/sys/vm/compact_unevictable_allowed";

/// Locks memory (see [`lock_memory`]): before any of the daemon's threads
/// exists, so each is spawned knowing whether its stack is populated or
/// paged in. Returns whether it worked.
pub fn lock_self() -> bool {
    prefault_stack::<CORE_STACK>();
    lock_memory()
}

/// The rest of the protection, once the threads exist: a priority raised
/// earlier would be inherited by them where real-time is refused and only
/// nice -20 is granted (that path has no reset-on-fork).
pub fn protect_self(locked: bool) -> Protection {
    let mut p = Protection {
        locked,
        ..Protection::default()
    };
    match std::fs::write("/proc/self/oom_score_adj", "-1000") {
        Ok(()) => p.oom_adj = true,
        Err(e) => log::warn!("setting own oom_score_adj to -1000: {e}"),
    }
    p.priority = raise_priority();
    p.pinned = pages_stay_put();
    p
}

/// Whether compaction leaves locked pages where they are. Locking keeps
/// pages in RAM, not in place: with `compact_unevictable_allowed` at 1,
/// kcompactd migrates them too, and a thread touching one mid-move faults
/// and waits, under the very pressure that makes compaction run. Seen once
/// on the core in the VM thrash (a `pread` of /proc into a buffer page); on
/// this host one `compact_memory` moved 114 of the daemon's 115 locked
/// anonymous pages, and none with the sysctl at 0.
fn pages_stay_put() -> Option<bool> {
    let pinned = match std::fs::read_to_string(COMPACT_UNEVICTABLE) {
        Ok(text) => compaction_spares_locked(&text),
        Err(e) => {
            log::info!(
                "{COMPACT_UNEVICTABLE}: {e}; cannot tell whether compaction moves locked pages"
            );
            return None;
        }
    };
    if pinned == Some(false) {
        log::warn!(
            "{COMPACT_UNEVICTABLE} is 1: compaction may move the daemon's locked pages, \
             and the core faults if it touches one mid-move (init/lmkd.rc writes 0)"
        );
    }
    pinned
}

/// Reads the sysctl's text: `Some(true)` when compaction spares locked
/// pages (0), `Some(false)` when it may move them (1).
pub fn compaction_spares_locked(text: &str) -> Option<bool> {
    match text.trim() {
        "0" => Some(true),
        "1" => Some(false),
        _ => None,
    }
}

/// Locks every mapping, now and later, fully faulted in. Not
/// `MCL_ONFAULT` (lmkd's choice, which keeps reserved but untouched memory
/// out of RSS): measured in the VM ladder, it left the core 8-9 page faults
/// per run on first touches of code and rings while the machine was
/// drowning, each a page allocation that can enter direct reclaim on the
/// kill path. Memory stays small by sizing what is mapped instead (thread
/// stacks, rings, the table), and by the stacks of threads off the kill
/// path locking on fault ([`spawn_demand_paged`]).
fn lock_memory() -> bool {
    // SAFETY: mlockall has no memory-safety preconditions.
    if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } == 0 {
        LOCKED.store(true, Ordering::Release);
        return true;
    }
    log::warn!(
        "mlockall(MCL_CURRENT | MCL_FUTURE) refused ({}); pages may be swapped or reclaimed",
        io::Error::last_os_error()
    );
    false
}

/// Spawns a thread that is off the kill path (the config loader, the
/// control plane) with a stack locked page by page as it is first touched,
/// instead of whole: each of those stacks is sized for hostile input at
/// its parser's recursion limit (256 kB) and normally uses a few pages.
/// In the VM ladder the daemon's Rss went from 2768 to 2268 kB with the
/// core and reaper still at 0 faults. A page fault on these threads may
/// wait for reclaim; the core never waits on them.
///
/// The locking mode is process-wide: new mappings lock on fault only
/// between the two `mlockall` calls around the spawn, and the second waits
/// until the new thread runs its closure. That covers the stack and what
/// std maps in the thread before the closure: the signal stack its stack
/// overflow handler runs on (8 kB and a guard page), which is never
/// touched unless that handler runs, and was populated and locked for
/// every thread: about 50 kB of the daemon's Rss with the recorder
/// attached in the VM ladder (964 kB, against 996-1,032). No other thread maps memory after start-up but the
/// report and control threads, which may fault anyway.
pub fn spawn_demand_paged<F, T>(b: thread::Builder, f: F) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let switch = LOCKED.load(Ordering::Acquire);
    // SAFETY: mlockall has no memory-safety preconditions. Refused
    // (a kernel before 4.4 has no MCL_ONFAULT), the stack is populated
    // as before.
    let on_fault = switch && unsafe { libc::mlockall(libc::MCL_FUTURE | libc::MCL_ONFAULT) } == 0;
    let (started, running) = std::sync::mpsc::sync_channel::<()>(1);
    let spawned = b.spawn(move || {
        let _ = started.send(());
        f()
    });
    if spawned.is_ok() {
        // Err only if the thread died before its closure ran.
        let _ = running.recv();
    }
    // SAFETY: as above; MCL_FUTURE alone leaves existing mappings alone.
    if on_fault && unsafe { libc::mlockall(libc::MCL_FUTURE) } != 0 {
        log::warn!(
            "mlockall(MCL_FUTURE) after a thread spawn refused ({}); later mappings lock on fault",
            io::Error::last_os_error()
        );
    }
    spawned
}

/// Spawns a thread that must run while memory is short (the reaper, the
/// namer, the watchdog): named `lmkd-{role}`, its `stack` bytes locked as
/// they are touched ([`spawn_demand_paged`]) with the first `PREFAULT`
/// touched up front so that its work never faults one in, and its CPU
/// priority raised so that it does not queue behind the processes eating
/// the memory. `on_start(role)` runs on the thread before `f`.
pub fn spawn_urgent<const PREFAULT: usize, F>(
    role: &'static str,
    stack: usize,
    on_start: fn(&'static str),
    f: F,
) -> io::Result<()>
where
    F: FnOnce() + Send + 'static,
{
    let b = thread::Builder::new()
        .name(format!("lmkd-{role}"))
        .stack_size(stack);
    spawn_demand_paged(b, move || {
        raise_thread_priority();
        prefault_stack::<PREFAULT>();
        on_start(role);
        f()
    })
    .map(drop)
    .map_err(|e| io::Error::new(e.kind(), format!("spawn {role} thread: {e}")))
}

/// One malloc arena: threads that format text (the report thread) would
/// otherwise each map a 64 MiB arena, locked by MCL_FUTURE.
/// Call first thing in `main`, before any thread starts.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; M_ARENA_MAX is -8 in glibc.
    unsafe {
        libc::mallopt(-8, 1);
    }
}

/// Touches `N` bytes of the calling thread's stack below this frame, so
/// those pages are present before the thread needs them (the main thread's
/// stack grows on demand; mlockall locks only what is there).
#[inline(never)]
pub fn prefault_stack<const N: usize>() {
    let mut buf = [0u8; N];
    for i in (0..buf.len()).step_by(4096) {
        // SAFETY: volatile write inside our own array, so it is not elided.
        unsafe { std::ptr::write_volatile(&mut buf[i], 1) };
    }
    std::hint::black_box(&buf);
}

/// How much CPU priority a thread got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    RealTime,
    Nice,
    Unchanged,
}

/// SCHED_FIFO priority 1 if permitted (needs CAP_SYS_NICE), else nice -20,
/// for the calling thread only (Linux applies both per thread). The core,
/// the reaper and the watchdog each call it: the thread that sends SIGKILL
/// must not queue behind the very processes eating the memory. Does not
/// log, so a thread may call it before it is watched for allocations.
pub fn raise_thread_priority() -> Priority {
    // SAFETY: sched_param is plain data (musl's has extra fields).
    let mut param: libc::sched_param = unsafe { std::mem::zeroed() };
    param.sched_priority = 1;
    // The raw system call, not libc's wrapper: musl's sched_setscheduler
    // does nothing but fail with ENOSYS (POSIX speaks of processes, Linux
    // sets threads), so a static musl build never ran real-time. The
    // kernel reads only sched_priority, the first field in both libcs.
    // SAFETY: tid 0 is the calling thread; param outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sched_setscheduler,
            0,
            libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK,
            &param as *const libc::sched_param,
        )
    };
    if rc == 0 {
        return Priority::RealTime;
    }
    // SAFETY: setpriority on the calling thread.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -20) } == 0 {
        return Priority::Nice;
    }
    Priority::Unchanged
}

fn raise_priority() -> bool {
    match raise_thread_priority() {
        Priority::RealTime => true,
        Priority::Nice => {
            log::info!("real-time priority refused; running at nice -20");
            true
        }
        Priority::Unchanged => {
            log::warn!(
                "could not raise scheduling priority ({})",
                io::Error::last_os_error()
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_sysctl_reads_both_ways_and_nothing_else() {
        assert_eq!(compaction_spares_locked("0\n"), Some(true));
        assert_eq!(compaction_spares_locked("1\n"), Some(false));
        assert_eq!(compaction_spares_locked(""), None);
        assert_eq!(compaction_spares_locked("10\n"), None);
    }

    /// Scheduling policy of the calling thread as the kernel sees it
    /// (field 41 of /proc/thread-self/stat).
    fn policy() -> u32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        // Fields from 3 on; policy is field 41.
        after_comm.split(' ').nth(41 - 3).unwrap().parse().unwrap()
    }

    #[test]
    fn real_time_when_permitted_and_the_kernel_agrees() {
        let (got, policy) = std::thread::spawn(|| (raise_thread_priority(), policy()))
            .join()
            .unwrap();
        assert_eq!(
            got == Priority::RealTime,
            policy == libc::SCHED_FIFO as u32,
            "raise_thread_priority said {got:?}, the kernel's policy is {policy}"
        );
        // Root here has CAP_SYS_NICE: a build whose libc wrapper is a stub
        // (musl's) must still get SCHED_FIFO through the system call.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(got, Priority::RealTime, "root did not get SCHED_FIFO");
        }
    }
}
