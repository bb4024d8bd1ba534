//! A bounded single-producer single-consumer ring of `Copy` records with an
//! eventfd doorbell. It carries kill jobs to the reaper, completions back
//! to the core, and report records to the logging thread: storage is
//! allocated once, `push` never blocks or allocates, a full ring refuses.

use std::cell::UnsafeCell;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::sys;

struct Shared<T> {
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    /// Next slot to read (consumer-owned).
    head: AtomicUsize,
    /// Next slot to write (producer-owned).
    tail: AtomicUsize,
    dropped: AtomicU64,
    bell: OwnedFd,
}

// SAFETY: a slot is written only by the single producer before `tail` is
// published (Release) and read only by the single consumer after it
// observes `tail` (Acquire); T is Copy, so no drop runs on the slots.
unsafe impl<T: Copy + Send> Sync for Shared<T> {}
// SAFETY: as above; the raw slots move between threads only as T values.
unsafe impl<T: Copy + Send> Send for Shared<T> {}

pub struct Sender<T: Copy + Send>(Arc<Shared<T>>);
pub struct Receiver<T: Copy + Send>(Arc<Shared<T>>);

/// Creates a ring of `capacity` records (rounded up to a power of two).
pub fn channel<T: Copy + Send>(capacity: usize) -> io::Result<(Sender<T>, Receiver<T>)> {
    // SAFETY: eventfd(2) with valid flags; checked below.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::from(sys::SysError::last("eventfd for ring")));
    }
    // SAFETY: fresh descriptor we own.
    Ok(with_bell(capacity, unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Creates a ring that rings `other`'s bell, so that one consumer drains
/// both after one wakeup on one descriptor (either receiver's `ack`
/// clears it for both).
pub fn channel_sharing_bell<T: Copy + Send, U: Copy + Send>(
    capacity: usize,
    other: &Receiver<U>,
) -> io::Result<(Sender<T>, Receiver<T>)> {
    let bell = other
        .0
        .bell
        .try_clone()
        .map_err(|e| io::Error::new(e.kind(), format!("dup ring eventfd: {e}")))?;
    Ok(with_bell(capacity, bell))
}

fn with_bell<T: Copy + Send>(capacity: usize, bell: OwnedFd) -> (Sender<T>, Receiver<T>) {
    let cap = capacity.max(2).next_power_of_two();
    let slots = (0..cap)
        .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
        .collect();
    let shared = Arc::new(Shared {
        slots,
        head: AtomicUsize::new(0),
        tail: AtomicUsize::new(0),
        dropped: AtomicU64::new(0),
        bell,
    });
    (Sender(shared.clone()), Receiver(shared))
}

impl<T: Copy + Send> Sender<T> {
    /// Queues a record and rings the bell. A full ring drops the record,
    /// counts it, and returns false: the producer never waits.
    pub fn push(&self, v: T) -> bool {
        let s = &*self.0;
        // Its Acquire load of `head` orders the consumer's read of the
        // slot reused below before this write.
        if !self.has_room() {
            s.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let tail = s.tail.load(Ordering::Relaxed);
        // SAFETY: slot `tail` is not visible to the consumer until the
        // Release store below, and only this producer writes it.
        unsafe { (*s.slots[tail & (s.slots.len() - 1)].get()).write(v) };
        s.tail.store(tail.wrapping_add(1), Ordering::Release);
        let one: u64 = 1;
        // SAFETY: 8-byte write to our eventfd; EAGAIN (counter full) is harmless.
        unsafe {
            libc::write(
                s.bell.as_raw_fd(),
                &one as *const u64 as *const libc::c_void,
                8,
            )
        };
        true
    }

    /// Whether a push would be taken now. The producer is the only one
    /// who fills the ring, so the answer holds until its next push.
    pub fn has_room(&self) -> bool {
        let s = &*self.0;
        let head = s.head.load(Ordering::Acquire);
        s.tail.load(Ordering::Relaxed).wrapping_sub(head) < s.slots.len()
    }

    pub fn dropped(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }
}

impl<T: Copy + Send> Receiver<T> {
    /// Takes the oldest record, if any.
    pub fn pop(&self) -> Option<T> {
        let s = &*self.0;
        let head = s.head.load(Ordering::Relaxed);
        if head == s.tail.load(Ordering::Acquire) {
            return None;
        }
        // SAFETY: the producer published this slot (Acquire above) and will
        // not reuse it until `head` moves past it (Release below).
        let v = unsafe { (*s.slots[head & (s.slots.len() - 1)].get()).assume_init_read() };
        s.head.store(head.wrapping_add(1), Ordering::Release);
        Some(v)
    }

    /// Clears the doorbell; call before draining with `pop`.
    pub fn ack(&self) {
        let mut v: u64 = 0;
        // SAFETY: 8-byte read from our non-blocking eventfd.
        unsafe {
            libc::read(
                self.0.bell.as_raw_fd(),
                &mut v as *mut u64 as *mut libc::c_void,
                8,
            )
        };
    }

    /// Blocks until the bell rings or `timeout_ms` passes (-1: forever).
    pub fn wait(&self, timeout_ms: i32) {
        let mut pfd = libc::pollfd {
            fd: self.0.bell.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    }

    pub fn dropped(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }
}

impl<T: Copy + Send> AsFd for Receiver<T> {
    /// The doorbell, for an epoll set.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.bell.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_and_full() {
        let (tx, rx) = channel::<u32>(4).unwrap();
        for i in 0..4 {
            assert!(tx.push(i));
        }
        assert!(!tx.push(99));
        assert_eq!(tx.dropped(), 1);
        rx.ack();
        assert_eq!(
            (0..4).map(|_| rx.pop().unwrap()).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
        assert_eq!(rx.pop(), None);
    }

    #[test]
    fn two_rings_ring_one_bell() {
        let (a_tx, a_rx) = channel::<u32>(2).unwrap();
        let (b_tx, b_rx) = channel_sharing_bell::<u8, u32>(2, &a_rx).unwrap();
        let rung = |rx: &Receiver<u32>| {
            let mut pfd = libc::pollfd {
                fd: rx.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, no wait.
            unsafe { libc::poll(&mut pfd, 1, 0) == 1 }
        };
        assert!(!rung(&a_rx));
        assert!(b_tx.push(7));
        assert!(rung(&a_rx), "a push on the second ring rang no bell");
        b_rx.ack();
        assert!(!rung(&a_rx), "one ack clears the shared bell");
        assert!(a_tx.push(1));
        assert!(rung(&a_rx));
        a_rx.ack();
        assert_eq!((a_rx.pop(), b_rx.pop()), (Some(1), Some(7)));
    }

    #[test]
    fn across_threads() {
        let (tx, rx) = channel::<u64>(8).unwrap();
        let t = std::thread::spawn(move || {
            for i in 0..10_000u64 {
                while !tx.push(i) {
                    std::thread::yield_now();
                }
            }
        });
        let mut next = 0;
        while next < 10_000 {
            rx.wait(100);
            rx.ack();
            while let Some(v) = rx.pop() {
                assert_eq!(v, next);
                next += 1;
            }
        }
        t.join().unwrap();
    }
}
