//! A counting global allocator for tests that prove code paths allocate
//! nothing. A test binary installs it with
//! `#[global_allocator] static A: Counting = Counting;`.
//! Counts are per thread (tests running in parallel do not see each other),
//! plus one shared count for threads that called [`watch_thread`] (daemon
//! threads started by the code under test).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    static WATCHED: Cell<bool> = const { Cell::new(false) };
}

static WATCHED_ALLOCS: AtomicU64 = AtomicU64::new(0);
static WATCHED_FREES: AtomicU64 = AtomicU64::new(0);

pub struct Counting;

fn bump() {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
    if WATCHED.try_with(Cell::get).unwrap_or(false) {
        WATCHED_ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counters are const-initialised thread-locals and an atomic that never
// allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        bump();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        bump();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        bump();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(p, l, n) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if WATCHED.try_with(Cell::get).unwrap_or(false) {
            WATCHED_FREES.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(p, l) }
    }
}

/// Heap allocations made by this thread while running `f`.
pub fn allocations<R>(f: impl FnOnce() -> R) -> (u64, R) {
    let before = ALLOCS.with(Cell::get);
    let r = f();
    (ALLOCS.with(Cell::get) - before, r)
}

/// Counts this thread's allocations into [`watched_allocs`] from now on.
pub fn watch_thread() {
    WATCHED.with(|w| w.set(true));
}

pub fn watched_allocs() -> u64 {
    WATCHED_ALLOCS.load(Ordering::Relaxed)
}

/// Heap blocks freed by watched threads: `free` can hand memory back to the
/// kernel (trimming the heap), so the core must not free either.
pub fn watched_frees() -> u64 {
    WATCHED_FREES.load(Ordering::Relaxed)
}
