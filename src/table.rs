//! The process table: every registered process, in storage allocated once.
//!
//! All storage is one anonymous mapping, created and locked in
//! [`ProcTable::new`]; no method allocates afterwards. The mapping holds, in
//! this order (every section 4-byte aligned, the mapping page aligned):
//!
//! ```text
//! slots    [Slot; capacity]      the records plus their links
//! buckets  [u32; nbuckets]       pid hash heads, chained through Slot::hnext
//! heads    [u32; ADJ_LEVELS]     per-adj list heads (most recently moved)
//! tails    [u32; ADJ_LEVELS]     per-adj list tails (least recently moved)
//! ```
//!
//! Links are `u32` slot indices with [`NIL`] for "none", so the mapping holds
//! no pointers and every bit pattern in it is a valid value. Free slots form a
//! singly linked list through `Slot::next`.
//!
//! The table is the one owner of every record's descriptors (its pidfd and
//! its open `oom_score_adj`): it takes them as [`Handles`] on insertion,
//! lends them out as `BorrowedFd`s tied to a borrow of the table, gives them
//! back on removal and closes what is left when dropped. No other module
//! turns a raw number into a descriptor.

use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use memmap2::MmapOptions;

/// `owner` of a record whose registering connection has gone away.
pub const NO_OWNER: i32 = -1;

/// Lowest and highest `oom_score_adj`; one list per value in between.
pub const ADJ_MIN: i16 = -1000;
pub const ADJ_MAX: i16 = 1000;
/// Number of per-adj lists.
pub const ADJ_LEVELS: usize = (ADJ_MAX as i32 - ADJ_MIN as i32 + 1) as usize;

/// Largest capacity accepted: keeps indices well clear of [`NIL`] and the
/// mapping far below anything a phone would refuse for a bad config.
pub const MAX_CAPACITY: usize = 1 << 20;

/// "No slot" in every link.
const NIL: u32 = u32::MAX;
/// `Slot::list` of a free slot.
const FREE: u16 = u16::MAX;

/// One registered process, as its client described it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Proc {
    pub pid: i32,
    pub uid: i32,
    pub adj: i16,
    pub ptype: u8,
    /// Peer pid of the registering connection, or [`NO_OWNER`].
    pub owner: i32,
}

/// What the table keeps for a process beyond its [`Proc`]: proof of its
/// identity and the way to its `oom_score_adj`. Owned by the table while
/// the record is in it; handed back when the record leaves.
#[derive(Debug, Default)]
pub struct Handles {
    /// The pidfd opened at registration (None on kernels without
    /// `pidfd_open`).
    pub pidfd: Option<OwnedFd>,
    /// `/proc/<pid>/oom_score_adj` opened for writing at registration.
    pub oom_adj: Option<OwnedFd>,
    /// Start time in clock ticks since boot (`/proc/<pid>/stat` field 22),
    /// recorded when there is no pidfd to tell a reused pid apart; 0 if
    /// not recorded.
    pub start_ticks: u64,
}

/// `Slot::written_adj` when we have not written the process's
/// `oom_score_adj` (or the last write failed).
const NOT_WRITTEN: i16 = i16::MIN;

/// Insertion refused because the table is at capacity (see
/// [`ProcTable::insert`] for the other refusals it stands for).
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

/// Why [`ProcTable::try_insert`] refused a record. The table is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertError {
    /// Every slot is in use; nothing is evicted to make room.
    Full,
    /// The pid is already registered: update it instead.
    Duplicate,
    /// `adj` is outside -1000..=1000.
    BadAdj,
}

impl std::fmt::Display for InsertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InsertError::Full => "process table is full",
            InsertError::Duplicate => "pid is already in the process table",
            InsertError::BadAdj => "oom_score_adj out of range",
        })
    }
}

impl std::error::Error for InsertError {}

/// A record and its links, as stored in the mapping.
#[repr(C)]
#[derive(Clone, Copy)]
struct Slot {
    proc: Proc,
    /// `Handles::start_ticks`.
    start_ticks: u64,
    /// Owned descriptors (-1: none), closed only through `&mut ProcTable`.
    pidfd: RawFd,
    oom_adj_fd: RawFd,
    /// Next slot in the same hash bucket.
    hnext: u32,
    /// Towards the head of the adj list (more recently moved).
    prev: u32,
    /// Towards the tail of the adj list; the free list when free.
    next: u32,
    /// Adj list index, or [`FREE`].
    list: u16,
    /// The adj we last wrote to `oom_score_adj`, or [`NOT_WRITTEN`].
    written_adj: i16,
}

impl Slot {
    fn in_use(&self) -> bool {
        self.list != FREE
    }

    /// Moves the descriptors out of a slot that is leaving the table.
    fn take_handles(&mut self) -> Handles {
        let h = Handles {
            pidfd: take_fd(&mut self.pidfd),
            oom_adj: take_fd(&mut self.oom_adj_fd),
            start_ticks: self.start_ticks,
        };
        self.start_ticks = 0;
        self.written_adj = NOT_WRITTEN;
        h
    }
}

/// Turns a slot's descriptor number back into the owned descriptor it
/// stands for, leaving -1 behind.
fn take_fd(fd: &mut RawFd) -> Option<OwnedFd> {
    let raw = std::mem::replace(fd, -1);
    // SAFETY: a slot's descriptor came from `OwnedFd::into_raw_fd` in
    // `try_insert_with` and nothing else closes it; replacing it with -1
    // above makes this the only owner.
    (raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(raw) })
}

/// A registered record with what the table keeps beside it.
#[derive(Clone, Copy)]
pub struct Entry<'a> {
    slot: &'a Slot,
}

impl<'a> Entry<'a> {
    pub fn proc(&self) -> &'a Proc {
        &self.slot.proc
    }

    /// The record's pidfd, valid while the table is borrowed.
    pub fn pidfd(&self) -> Option<BorrowedFd<'a>> {
        borrow(self.slot.pidfd)
    }

    /// The record's open `oom_score_adj`, valid while the table is borrowed.
    pub fn oom_adj_fd(&self) -> Option<BorrowedFd<'a>> {
        borrow(self.slot.oom_adj_fd)
    }

    /// See [`Handles::start_ticks`].
    pub fn start_ticks(&self) -> u64 {
        self.slot.start_ticks
    }

    /// The adj we last wrote to the process's `oom_score_adj`, if the write
    /// went through.
    pub fn written_adj(&self) -> Option<i16> {
        (self.slot.written_adj != NOT_WRITTEN).then_some(self.slot.written_adj)
    }
}

/// Lends a slot's descriptor for as long as the table is borrowed.
fn borrow<'a>(fd: RawFd) -> Option<BorrowedFd<'a>> {
    // SAFETY: the slot owns `fd` (see `take_fd`) and closes it only through
    // `&mut ProcTable`, which cannot coexist with the `&'a` borrow of the
    // table this lifetime comes from.
    (fd >= 0).then(|| unsafe { BorrowedFd::borrow_raw(fd) })
}

/// Byte offsets of the sections inside the mapping.
#[derive(Clone, Copy, Debug)]
struct Layout {
    cap: usize,
    nbuckets: usize,
    /// `32 - log2(nbuckets)`: the multiplicative hash keeps the top bits.
    shift: u32,
    buckets: usize,
    heads: usize,
    tails: usize,
    total: usize,
}

impl Layout {
    fn new(cap: usize) -> Self {
        let nbuckets = (2 * cap).next_power_of_two().max(2);
        let shift = 32 - nbuckets.trailing_zeros();
        let buckets = cap * std::mem::size_of::<Slot>();
        let heads = buckets + nbuckets * 4;
        let tails = heads + ADJ_LEVELS * 4;
        let total = tails + ADJ_LEVELS * 4;
        Layout {
            cap,
            nbuckets,
            shift,
            buckets,
            heads,
            tails,
            total,
        }
    }

    /// Bucket of a pid. Fibonacci hashing spreads pids that share low bits
    /// (pids are handed out sequentially and wrap, so low bits cluster).
    fn bucket(&self, pid: i32) -> usize {
        ((pid as u32).wrapping_mul(0x9E37_79B9) >> self.shift) as usize
    }
}

/// Typed views of the mapping's sections.
struct Parts<'a> {
    slots: &'a mut [Slot],
    buckets: &'a mut [u32],
    heads: &'a mut [u32],
    tails: &'a mut [u32],
}

/// Shared typed views of the mapping's sections.
struct PartsRef<'a> {
    slots: &'a [Slot],
    buckets: &'a [u32],
    heads: &'a [u32],
    tails: &'a [u32],
}

/// Views `bytes` as exactly `n` values of `T`.
///
/// # Safety
/// `T` must be a plain integer aggregate for which every bit pattern is a
/// valid value (true of `u32` and `Slot`).
unsafe fn typed_mut<T>(bytes: &mut [u8], n: usize) -> &mut [T] {
    // SAFETY: any bit pattern is a valid `T` (caller's contract); align_to_mut
    // itself guarantees the middle part is correctly aligned for `T`.
    let (pre, mid, _) = unsafe { bytes.align_to_mut::<T>() };
    // The mapping is page aligned and every section offset is a multiple of
    // 4 (the alignment of both types), so nothing is lost to alignment.
    assert!(
        pre.is_empty() && mid.len() >= n,
        "process table layout misaligned"
    );
    &mut mid[..n]
}

/// Shared counterpart of [`typed_mut`].
///
/// # Safety
/// As for [`typed_mut`].
unsafe fn typed<T>(bytes: &[u8], n: usize) -> &[T] {
    // SAFETY: any bit pattern is a valid `T` (caller's contract); align_to
    // itself guarantees the middle part is correctly aligned for `T`.
    let (pre, mid, _) = unsafe { bytes.align_to::<T>() };
    assert!(
        pre.is_empty() && mid.len() >= n,
        "process table layout misaligned"
    );
    &mid[..n]
}

fn split_mut<'a>(map: &'a mut [u8], l: &Layout) -> Parts<'a> {
    let (slots, rest) = map.split_at_mut(l.buckets);
    let (buckets, rest) = rest.split_at_mut(l.heads - l.buckets);
    let (heads, rest) = rest.split_at_mut(l.tails - l.heads);
    // SAFETY: `Slot` is repr(C) and made only of integers (its padding is
    // explicit), `u32` is an integer: every bit pattern is valid for both.
    unsafe {
        Parts {
            slots: typed_mut(slots, l.cap),
            buckets: typed_mut(buckets, l.nbuckets),
            heads: typed_mut(heads, ADJ_LEVELS),
            tails: typed_mut(rest, ADJ_LEVELS),
        }
    }
}

fn split<'a>(map: &'a [u8], l: &Layout) -> PartsRef<'a> {
    let (slots, rest) = map.split_at(l.buckets);
    let (buckets, rest) = rest.split_at(l.heads - l.buckets);
    let (heads, rest) = rest.split_at(l.tails - l.heads);
    // SAFETY: as in `split_mut`.
    unsafe {
        PartsRef {
            slots: typed(slots, l.cap),
            buckets: typed(buckets, l.nbuckets),
            heads: typed(heads, ADJ_LEVELS),
            tails: typed(rest, ADJ_LEVELS),
        }
    }
}

/// List index of an adj, if it is in range.
fn adj_index(adj: i16) -> Option<usize> {
    (ADJ_MIN..=ADJ_MAX)
        .contains(&adj)
        .then(|| (adj as i32 - ADJ_MIN as i32) as usize)
}

impl Parts<'_> {
    fn find(&self, l: &Layout, pid: i32) -> Option<u32> {
        let mut i = self.buckets[l.bucket(pid)];
        while i != NIL {
            let s = &self.slots[i as usize];
            if s.proc.pid == pid {
                return Some(i);
            }
            i = s.hnext;
        }
        None
    }

    /// Puts slot `i` at the head of list `a`.
    fn push_head(&mut self, i: u32, a: usize) {
        let old = self.heads[a];
        let s = &mut self.slots[i as usize];
        s.list = a as u16;
        s.prev = NIL;
        s.next = old;
        if old == NIL {
            self.tails[a] = i;
        } else {
            self.slots[old as usize].prev = i;
        }
        self.heads[a] = i;
    }

    /// Takes slot `i` out of its adj list.
    fn unlink_adj(&mut self, i: u32) {
        let Slot {
            prev, next, list, ..
        } = self.slots[i as usize];
        let a = list as usize;
        if prev == NIL {
            self.heads[a] = next;
        } else {
            self.slots[prev as usize].next = next;
        }
        if next == NIL {
            self.tails[a] = prev;
        } else {
            self.slots[next as usize].prev = prev;
        }
    }

    /// Takes slot `i` out of its hash chain.
    fn unlink_hash(&mut self, l: &Layout, i: u32) {
        let b = l.bucket(self.slots[i as usize].proc.pid);
        let next = self.slots[i as usize].hnext;
        if self.buckets[b] == i {
            self.buckets[b] = next;
            return;
        }
        let mut j = self.buckets[b];
        while j != NIL {
            let s = &mut self.slots[j as usize];
            if s.hnext == i {
                s.hnext = next;
                return;
            }
            j = s.hnext;
        }
        // Every in-use slot is on its bucket's chain; reaching here means the
        // table's own invariants are broken.
        debug_assert!(false, "slot {i} missing from its hash chain");
    }
}

/// Fixed-capacity table of registered processes: O(1) lookup by pid, one
/// list per adj value ordered by last move.
pub struct ProcTable {
    map: memmap2::MmapMut,
    layout: Layout,
    len: usize,
    /// Head of the free slot list.
    free: u32,
    locked: bool,
}

impl std::fmt::Debug for ProcTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcTable")
            .field("capacity", &self.layout.cap)
            .field("len", &self.len)
            .field("locked", &self.locked)
            .field("mapped_bytes", &self.map.len())
            .finish()
    }
}

impl ProcTable {
    /// Allocates and locks storage for `capacity` records. A failed lock is
    /// not an error: check [`locked`](Self::locked) and log it once.
    pub fn new(capacity: usize) -> io::Result<Self> {
        if capacity == 0 || capacity > MAX_CAPACITY {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("process table capacity {capacity} not in 1..={MAX_CAPACITY}"),
            ));
        }
        let layout = Layout::new(capacity);
        // populate: fault the pages in now rather than on the first
        // registration, which may come while memory is already short.
        let mut map = MmapOptions::new()
            .len(layout.total)
            .populate()
            .map_anon()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("mmap of {} bytes for the process table: {e}", layout.total),
                )
            })?;
        let p = split_mut(&mut map, &layout);
        let n = p.slots.len();
        for (i, s) in p.slots.iter_mut().enumerate() {
            *s = Slot {
                proc: Proc {
                    owner: NO_OWNER,
                    ..Proc::default()
                },
                start_ticks: 0,
                pidfd: -1,
                oom_adj_fd: -1,
                hnext: NIL,
                prev: NIL,
                next: if i + 1 < n { (i + 1) as u32 } else { NIL },
                list: FREE,
                written_adj: NOT_WRITTEN,
            };
        }
        p.buckets.fill(NIL);
        p.heads.fill(NIL);
        p.tails.fill(NIL);
        let locked = map.lock().is_ok();
        Ok(ProcTable {
            map,
            layout,
            len: 0,
            free: 0,
            locked,
        })
    }

    pub fn capacity(&self) -> usize {
        self.layout.cap
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the storage is locked in RAM (`mlock` may be refused without
    /// CAP_IPC_LOCK or over RLIMIT_MEMLOCK).
    pub fn locked(&self) -> bool {
        self.locked
    }

    /// Size of the one mapping holding everything.
    pub fn mapped_bytes(&self) -> usize {
        self.map.len()
    }

    fn parts(&self) -> PartsRef<'_> {
        split(&self.map, &self.layout)
    }

    fn parts_mut(&mut self) -> Parts<'_> {
        split_mut(&mut self.map, &self.layout)
    }

    pub fn get(&self, pid: i32) -> Option<&Proc> {
        self.entry(pid).map(|e| e.proc())
    }

    /// A record with its descriptors and write state.
    pub fn entry(&self, pid: i32) -> Option<Entry<'_>> {
        let p = self.parts();
        let mut i = p.buckets[self.layout.bucket(pid)];
        while i != NIL {
            let s = &p.slots[i as usize];
            if s.proc.pid == pid {
                return Some(Entry { slot: s });
            }
            i = s.hnext;
        }
        None
    }

    /// The pidfd of a registered process, valid while the table is borrowed.
    pub fn pidfd(&self, pid: i32) -> Option<BorrowedFd<'_>> {
        self.entry(pid)?.pidfd()
    }

    pub fn contains(&self, pid: i32) -> bool {
        self.get(pid).is_some()
    }

    /// Adds a new record at the head of its adj list. Refused (table
    /// unchanged) when full, when the pid is already present, or when `adj`
    /// is out of range; use [`try_insert`](Self::try_insert) to tell these
    /// apart. Callers are expected to check `get` and the adj range first,
    /// so in practice `Err(Full)` means full.
    pub fn insert(&mut self, p: Proc) -> Result<(), Full> {
        self.try_insert(p).map_err(|_| Full)
    }

    /// [`insert`](Self::insert) with the reason for a refusal.
    pub fn try_insert(&mut self, p: Proc) -> Result<(), InsertError> {
        self.try_insert_with(p, Handles::default())
    }

    /// [`try_insert`](Self::try_insert) of a record with its descriptors.
    /// The table owns them from here on; a refused record's are closed.
    pub fn try_insert_with(&mut self, p: Proc, h: Handles) -> Result<(), InsertError> {
        let a = adj_index(p.adj).ok_or(InsertError::BadAdj)?;
        let l = self.layout;
        let free = self.free;
        let mut parts = split_mut(&mut self.map, &l);
        if parts.find(&l, p.pid).is_some() {
            return Err(InsertError::Duplicate);
        }
        if free == NIL {
            return Err(InsertError::Full);
        }
        let i = free;
        let b = l.bucket(p.pid);
        let s = &mut parts.slots[i as usize];
        self.free = s.next;
        s.proc = p;
        s.pidfd = h.pidfd.map_or(-1, IntoRawFd::into_raw_fd);
        s.oom_adj_fd = h.oom_adj.map_or(-1, IntoRawFd::into_raw_fd);
        s.start_ticks = h.start_ticks;
        s.written_adj = NOT_WRITTEN;
        s.hnext = parts.buckets[b];
        parts.buckets[b] = i;
        parts.push_head(i, a);
        self.len += 1;
        Ok(())
    }

    /// Moves a record to the head of `adj`'s list, also when its adj is
    /// unchanged, so the tail is always the least recently moved. False if
    /// the pid is unknown or `adj` is out of range (nothing changes).
    pub fn set_adj(&mut self, pid: i32, adj: i16) -> bool {
        let Some(a) = adj_index(adj) else {
            return false;
        };
        let l = self.layout;
        let mut parts = self.parts_mut();
        let Some(i) = parts.find(&l, pid) else {
            return false;
        };
        parts.unlink_adj(i);
        parts.slots[i as usize].proc.adj = adj;
        parts.push_head(i, a);
        true
    }

    /// Replaces a record's fields with `p`'s (same pid) and moves it to the
    /// head of `p.adj`'s list, in one lookup. False if the pid is unknown
    /// or the adj out of range (nothing changes).
    pub fn refresh(&mut self, p: Proc) -> bool {
        let Some(a) = adj_index(p.adj) else {
            return false;
        };
        let l = self.layout;
        let mut parts = self.parts_mut();
        let Some(i) = parts.find(&l, p.pid) else {
            return false;
        };
        parts.unlink_adj(i);
        parts.slots[i as usize].proc = p;
        parts.push_head(i, a);
        true
    }

    fn update(&mut self, pid: i32, f: impl FnOnce(&mut Proc)) -> bool {
        let l = self.layout;
        let parts = self.parts_mut();
        match parts.find(&l, pid) {
            Some(i) => {
                f(&mut parts.slots[i as usize].proc);
                true
            }
            None => false,
        }
    }

    pub fn set_uid(&mut self, pid: i32, uid: i32) -> bool {
        self.update(pid, |p| p.uid = uid)
    }

    pub fn set_owner(&mut self, pid: i32, owner: i32) -> bool {
        self.update(pid, |p| p.owner = owner)
    }

    /// Sets the process type (a re-registration may change it).
    pub fn set_ptype(&mut self, pid: i32, ptype: u8) -> bool {
        self.update(pid, |p| p.ptype = ptype)
    }

    /// Remembers what we last wrote to the process's `oom_score_adj`
    /// (None: unknown, e.g. the write failed), so an unchanged adj need
    /// not be written again.
    pub fn set_written_adj(&mut self, pid: i32, adj: Option<i16>) -> bool {
        let l = self.layout;
        let parts = self.parts_mut();
        match parts.find(&l, pid) {
            Some(i) => {
                parts.slots[i as usize].written_adj = adj.unwrap_or(NOT_WRITTEN);
                true
            }
            None => false,
        }
    }

    /// Frees slot `i`, which must be in use, and returns its record.
    fn remove_slot(&mut self, i: u32) -> (Proc, Handles) {
        let l = self.layout;
        let free = self.free;
        let mut parts = split_mut(&mut self.map, &l);
        parts.unlink_hash(&l, i);
        parts.unlink_adj(i);
        let s = &mut parts.slots[i as usize];
        let p = s.proc;
        let h = s.take_handles();
        s.list = FREE;
        s.hnext = NIL;
        s.prev = NIL;
        s.next = free;
        self.free = i;
        self.len -= 1;
        (p, h)
    }

    /// Removes a record and hands it back with its descriptors (dropping
    /// them closes them).
    pub fn remove(&mut self, pid: i32) -> Option<(Proc, Handles)> {
        let l = self.layout;
        let i = self.parts_mut().find(&l, pid)?;
        Some(self.remove_slot(i))
    }

    /// The least recently moved record at `adj`.
    pub fn tail(&self, adj: i16) -> Option<&Proc> {
        let a = adj_index(adj)?;
        let p = self.parts();
        let i = p.tails[a];
        (i != NIL).then(|| &p.slots[i as usize].proc)
    }

    /// The most recently moved record at `adj`.
    pub fn head(&self, adj: i16) -> Option<&Proc> {
        let a = adj_index(adj)?;
        let p = self.parts();
        let i = p.heads[a];
        (i != NIL).then(|| &p.slots[i as usize].proc)
    }

    /// How many records each adj holds, for every adj that holds any,
    /// highest adj first. Reads the list heads and the records in use,
    /// never a free slot: the core takes this census at every evaluation,
    /// and a scan of every slot read the whole mapping each time (20 pages
    /// at the default capacity): in the VM launch storm the core faulted
    /// there on an absent page of this locked mapping, most likely one the
    /// kernel was moving for compaction.
    pub fn adj_counts(&self) -> impl Iterator<Item = (i16, u32)> + '_ {
        let p = self.parts();
        (0..ADJ_LEVELS).rev().filter_map(move |a| {
            let mut i = p.heads[a];
            let mut n = 0;
            while i != NIL {
                n += 1;
                i = p.slots[i as usize].next;
            }
            (n > 0).then(|| ((a as i32 + i32::from(ADJ_MIN)) as i16, n))
        })
    }

    /// Records at `adj`, from the tail (least recently moved) to the head.
    /// Empty for an out-of-range adj.
    pub fn iter_adj(&self, adj: i16) -> impl Iterator<Item = &Proc> {
        let p = self.parts();
        let cur = adj_index(adj).map_or(NIL, |a| p.tails[a]);
        AdjIter {
            slots: p.slots,
            cur,
        }
    }

    /// Every record owned by `owner` becomes unowned (its client went away).
    pub fn disown(&mut self, owner: i32) {
        for s in self.parts_mut().slots.iter_mut() {
            if s.in_use() && s.proc.owner == owner {
                s.proc.owner = NO_OWNER;
            }
        }
    }

    /// Removes every record for which `pred` is true, handing each removed
    /// record to `on_removed`; their descriptors are closed.
    pub fn remove_where(
        &mut self,
        mut pred: impl FnMut(&Proc) -> bool,
        mut on_removed: impl FnMut(Proc),
    ) {
        for i in 0..self.layout.cap {
            let s = self.parts().slots[i];
            if s.in_use() && pred(&s.proc) {
                on_removed(self.remove_slot(i as u32).0);
            }
        }
    }

    /// Records in slots `start..`, with their slot numbers (a reader
    /// outside the core copies the table a bounded chunk at a time).
    pub fn iter_from(&self, start: usize) -> impl Iterator<Item = (usize, &Proc)> {
        let slots = self.parts().slots;
        slots
            .get(start..)
            .unwrap_or(&[])
            .iter()
            .enumerate()
            .filter(|(_, s)| s.in_use())
            .map(move |(i, s)| (start + i, &s.proc))
    }

    /// Every record, in slot order (no meaningful order).
    pub fn iter(&self) -> impl Iterator<Item = &Proc> {
        self.parts()
            .slots
            .iter()
            .filter(|s| s.in_use())
            .map(|s| &s.proc)
    }
}

impl Drop for ProcTable {
    /// Closes the descriptors of the records still in the table.
    fn drop(&mut self) {
        for s in self.parts_mut().slots.iter_mut().filter(|s| s.in_use()) {
            drop(s.take_handles());
        }
    }
}

/// Walks one adj list from tail to head.
struct AdjIter<'a> {
    slots: &'a [Slot],
    cur: u32,
}

impl<'a> Iterator for AdjIter<'a> {
    type Item = &'a Proc;

    fn next(&mut self) -> Option<&'a Proc> {
        if self.cur == NIL {
            return None;
        }
        let s = &self.slots[self.cur as usize];
        self.cur = s.prev;
        Some(&s.proc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, VecDeque};

    fn rec(pid: i32, adj: i16) -> Proc {
        Proc {
            pid,
            uid: 10_000 + pid,
            adj,
            ptype: 0,
            owner: 7,
        }
    }

    fn pids_at(t: &ProcTable, adj: i16) -> Vec<i32> {
        t.iter_adj(adj).map(|p| p.pid).collect()
    }

    /// Checks every structural invariant: hash chains, list links, counts.
    fn check(t: &ProcTable) {
        let p = t.parts();
        let mut in_lists = 0;
        for a in 0..ADJ_LEVELS {
            let mut prev = NIL;
            let mut i = p.heads[a];
            while i != NIL {
                let s = &p.slots[i as usize];
                assert_eq!(s.list as usize, a);
                assert_eq!(s.prev, prev);
                assert_eq!(adj_index(s.proc.adj), Some(a));
                prev = i;
                i = s.next;
                in_lists += 1;
            }
            assert_eq!(p.tails[a], prev);
        }
        assert_eq!(in_lists, t.len());
        let mut in_chains = 0;
        for (b, &head) in p.buckets.iter().enumerate() {
            let mut i = head;
            while i != NIL {
                let s = &p.slots[i as usize];
                assert!(s.in_use());
                assert_eq!(t.layout.bucket(s.proc.pid), b);
                i = s.hnext;
                in_chains += 1;
            }
        }
        assert_eq!(in_chains, t.len());
        let mut nfree = 0;
        let mut i = t.free;
        while i != NIL {
            assert!(!p.slots[i as usize].in_use());
            i = p.slots[i as usize].next;
            nfree += 1;
        }
        assert_eq!(nfree + t.len(), t.capacity());
        assert_eq!(t.iter().count(), t.len());
        // The census walks the lists; a scan of every slot must agree.
        let mut by_adj = BTreeMap::new();
        for r in t.iter() {
            *by_adj.entry(r.adj).or_insert(0u32) += 1;
        }
        let expect: Vec<(i16, u32)> = by_adj.into_iter().rev().collect();
        assert_eq!(t.adj_counts().collect::<Vec<_>>(), expect);
    }

    #[test]
    fn layout_fits_mapping() {
        for cap in [1, 2, 3, 100, 1000, 4096] {
            let t = ProcTable::new(cap).unwrap();
            assert_eq!(t.capacity(), cap);
            assert!(t.layout.nbuckets.is_power_of_two());
            assert!(t.layout.nbuckets >= 2 * cap);
            assert!(t.mapped_bytes() >= t.layout.total);
            assert!(t.is_empty());
            check(&t);
        }
        assert!(ProcTable::new(0).is_err());
        assert!(ProcTable::new(MAX_CAPACITY + 1).is_err());
    }

    #[test]
    fn locks_when_permitted() {
        let t = ProcTable::new(16).unwrap();
        // As root the lock succeeds; elsewhere it may not, and must not fail new().
        if nix::unistd::geteuid().is_root() {
            assert!(t.locked());
        }
    }

    #[test]
    fn insert_get_remove() {
        let mut t = ProcTable::new(8).unwrap();
        assert_eq!(t.get(1), None);
        t.insert(rec(100, 900)).unwrap();
        t.insert(rec(200, 0)).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(100), Some(&rec(100, 900)));
        assert_eq!(t.get(200), Some(&rec(200, 0)));
        assert_eq!(t.get(300), None);
        assert!(t.set_uid(100, 5));
        assert!(t.set_owner(100, NO_OWNER));
        assert!(t.set_ptype(100, 1));
        assert!(!t.set_uid(300, 5));
        assert!(!t.set_owner(300, 5));
        let (got, h) = t.remove(100).unwrap();
        assert_eq!((got.uid, got.owner, got.ptype), (5, NO_OWNER, 1));
        assert!(h.pidfd.is_none() && h.oom_adj.is_none());
        assert!(t.remove(100).is_none());
        assert_eq!(t.get(100), None);
        assert_eq!(t.tail(900), None);
        assert_eq!(t.len(), 1);
        check(&t);
    }

    #[test]
    fn duplicate_and_bad_adj_refused() {
        let mut t = ProcTable::new(4).unwrap();
        t.insert(rec(5, 100)).unwrap();
        assert_eq!(t.try_insert(rec(5, 200)), Err(InsertError::Duplicate));
        assert_eq!(t.insert(rec(5, 200)), Err(Full));
        assert_eq!(t.get(5), Some(&rec(5, 100)));
        for adj in [-1001, 1001, i16::MIN, i16::MAX] {
            assert_eq!(t.try_insert(rec(6, adj)), Err(InsertError::BadAdj));
            assert!(!t.set_adj(5, adj));
            assert_eq!(t.tail(adj), None);
            assert_eq!(t.iter_adj(adj).count(), 0);
        }
        assert_eq!(t.get(5), Some(&rec(5, 100)));
        assert_eq!(t.len(), 1);
        assert!(t.try_insert(rec(6, -1000)).is_ok());
        assert!(t.try_insert(rec(7, 1000)).is_ok());
        assert_eq!(t.tail(-1000).unwrap().pid, 6);
        assert_eq!(t.tail(1000).unwrap().pid, 7);
        check(&t);
    }

    #[test]
    fn head_and_tail_follow_moves() {
        let mut t = ProcTable::new(8).unwrap();
        for pid in 1..=4 {
            t.insert(rec(pid, 900)).unwrap();
        }
        // Inserted at the head: the first one is the tail.
        assert_eq!(pids_at(&t, 900), [1, 2, 3, 4]);
        assert_eq!(t.tail(900).unwrap().pid, 1);
        assert_eq!(t.head(900).unwrap().pid, 4);
        // An unchanged adj still moves to the head.
        assert!(t.set_adj(1, 900));
        assert_eq!(pids_at(&t, 900), [2, 3, 4, 1]);
        // Moving the middle one away and back.
        assert!(t.set_adj(3, 0));
        assert_eq!(pids_at(&t, 900), [2, 4, 1]);
        assert_eq!(pids_at(&t, 0), [3]);
        assert_eq!(t.get(3).unwrap().adj, 0);
        assert!(t.set_adj(3, 900));
        assert_eq!(pids_at(&t, 900), [2, 4, 1, 3]);
        assert_eq!(t.tail(0), None);
        // Removing head, tail and middle.
        t.remove(3);
        t.remove(2);
        assert_eq!(pids_at(&t, 900), [4, 1]);
        t.insert(rec(5, 900)).unwrap();
        t.remove(1);
        assert_eq!(pids_at(&t, 900), [4, 5]);
        assert!(!t.set_adj(42, 0));
        // refresh: new fields and a move to the head, like set_adj.
        assert!(t.refresh(Proc {
            uid: 9,
            ..rec(4, 900)
        }));
        assert_eq!(pids_at(&t, 900), [5, 4]);
        assert_eq!(t.get(4).unwrap().uid, 9);
        assert!(t.refresh(rec(5, 0)));
        assert_eq!((pids_at(&t, 900), pids_at(&t, 0)), (vec![4], vec![5]));
        assert!(!t.refresh(rec(42, 0)) && !t.refresh(rec(4, 1001)));
        check(&t);
    }

    #[test]
    fn full_refuses_without_eviction() {
        let mut t = ProcTable::new(3).unwrap();
        for pid in 1..=3 {
            t.insert(rec(pid, 500)).unwrap();
        }
        assert_eq!(t.insert(rec(4, 500)), Err(Full));
        assert_eq!(t.try_insert(rec(4, 500)), Err(InsertError::Full));
        assert_eq!(t.len(), 3);
        assert_eq!(t.get(4), None);
        assert_eq!(pids_at(&t, 500), [1, 2, 3]);
        // A freed slot is reused.
        t.remove(2).unwrap();
        t.insert(rec(4, 500)).unwrap();
        assert_eq!(pids_at(&t, 500), [1, 3, 4]);
        assert_eq!(t.insert(rec(5, 500)), Err(Full));
        check(&t);
    }

    #[test]
    fn disown_and_remove_where() {
        let mut t = ProcTable::new(16).unwrap();
        for pid in 1..=10 {
            t.insert(Proc {
                owner: pid % 3,
                ..rec(pid, (pid * 10) as i16)
            })
            .unwrap();
        }
        t.disown(1);
        assert!(t.iter().all(|p| p.owner != 1));
        assert_eq!(t.iter().filter(|p| p.owner == NO_OWNER).count(), 4);
        // PROCPURGE by owner 2: its own records and the unowned ones.
        let mut closed = Vec::new();
        t.remove_where(
            |p| p.owner == 2 || p.owner == NO_OWNER,
            |p| closed.push(p.pid),
        );
        closed.sort();
        assert_eq!(closed, [1, 2, 4, 5, 7, 8, 10]);
        let mut left: Vec<i32> = t.iter().map(|p| p.pid).collect();
        left.sort();
        assert_eq!(left, [3, 6, 9]);
        check(&t);
        t.remove_where(|_| true, |_| {});
        assert!(t.is_empty());
        check(&t);
    }

    /// Whether `fd` is an open descriptor of this process.
    fn is_open(fd: RawFd) -> bool {
        std::path::Path::new(&format!("/proc/self/fd/{fd}")).exists()
    }

    #[test]
    fn owns_descriptors_until_they_leave() {
        use std::os::fd::{AsRawFd, OwnedFd};
        let open = || OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
        let mut t = ProcTable::new(4).unwrap();
        let (a, b, c) = (open(), open(), open());
        let (ra, rb, rc) = (a.as_raw_fd(), b.as_raw_fd(), c.as_raw_fd());
        let h = |pidfd, oom_adj| Handles {
            pidfd: Some(pidfd),
            oom_adj,
            start_ticks: 42,
        };
        t.try_insert_with(rec(1, 0), h(a, Some(b))).unwrap();
        t.try_insert_with(rec(2, 0), h(c, None)).unwrap();
        let e = t.entry(1).unwrap();
        assert_eq!(e.pidfd().map(|f| f.as_raw_fd()), Some(ra));
        assert_eq!(e.oom_adj_fd().map(|f| f.as_raw_fd()), Some(rb));
        assert_eq!((e.start_ticks(), e.written_adj()), (42, None));
        assert!(t.set_written_adj(1, Some(0)));
        assert_eq!(t.entry(1).unwrap().written_adj(), Some(0));
        // A refused record's descriptors are closed, not leaked.
        let d = open();
        let rd = d.as_raw_fd();
        assert_eq!(
            t.try_insert_with(rec(1, 5), h(d, None)),
            Err(InsertError::Duplicate)
        );
        assert!(!is_open(rd));
        // Removal hands them back open; dropping them closes them.
        let (p, got) = t.remove(1).unwrap();
        assert_eq!(p.pid, 1);
        assert!(is_open(ra) && is_open(rb));
        assert_eq!(got.pidfd.as_ref().map(|f| f.as_raw_fd()), Some(ra));
        drop(got);
        assert!(!is_open(ra) && !is_open(rb));
        // A slot reused without descriptors has none.
        t.insert(rec(3, 0)).unwrap();
        assert!(t.pidfd(3).is_none() && t.entry(3).unwrap().written_adj().is_none());
        // The table closes what it still holds when dropped.
        assert!(is_open(rc));
        drop(t);
        assert!(!is_open(rc));
    }

    #[test]
    fn hash_collisions() {
        // 8 buckets for capacity 4: many of these must share buckets.
        let mut t = ProcTable::new(4).unwrap();
        let l = t.layout;
        let target = l.bucket(1);
        let same: Vec<i32> = (2..100_000)
            .filter(|&p| l.bucket(p) == target)
            .take(3)
            .collect();
        let pids = [1, same[0], same[1], same[2]];
        for &p in &pids {
            t.insert(rec(p, 0)).unwrap();
        }
        check(&t);
        for &p in &pids {
            assert_eq!(t.get(p).unwrap().pid, p);
        }
        // Remove from the middle, the chain head and the end of the chain.
        for &p in &[pids[1], pids[3], pids[0], pids[2]] {
            assert_eq!(t.remove(p).unwrap().0.pid, p);
            assert_eq!(t.get(p), None);
            check(&t);
        }
        // Pids equal in their low bits (and negative ones) stay distinct.
        let mut t = ProcTable::new(64).unwrap();
        let pids: Vec<i32> = (1..=64).map(|i| i << 16).collect();
        for &p in &pids {
            t.insert(rec(p, 0)).unwrap();
        }
        for &p in &pids {
            assert_eq!(t.get(p).unwrap().pid, p);
        }
        assert_eq!(t.get(0), None);
        check(&t);
    }

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Reference model: records by pid, and per adj a deque with the head
    /// at the front.
    #[derive(Default)]
    struct Model {
        recs: BTreeMap<i32, Proc>,
        lists: BTreeMap<i16, VecDeque<i32>>,
    }

    impl Model {
        fn unlink(&mut self, pid: i32) {
            let adj = self.recs[&pid].adj;
            let l = self.lists.get_mut(&adj).unwrap();
            l.retain(|&q| q != pid);
        }
    }

    #[test]
    fn randomized_against_model() {
        const CAP: usize = 48;
        let adjs: [i16; 8] = [-1000, -1, 0, 100, 900, 999, 1000, 1001];
        for seed in [1u64, 0x9E37_79B9_7F4A_7C15, 12345] {
            let mut rng = XorShift(seed);
            let mut t = ProcTable::new(CAP).unwrap();
            let mut m = Model::default();
            for step in 0..20_000 {
                // A small pid space (with equal low bits) keeps hits frequent.
                let pid = (rng.below(80) as i32) * 4096 + 1;
                let adj = adjs[rng.below(adjs.len() as u64) as usize];
                let ok_adj = (-1000..=1000).contains(&adj);
                match rng.below(10) {
                    0..=3 => {
                        let p = Proc {
                            pid,
                            uid: rng.below(5) as i32,
                            adj,
                            ptype: rng.below(2) as u8,
                            owner: rng.below(4) as i32 - 1,
                        };
                        let want = if !ok_adj {
                            Err(InsertError::BadAdj)
                        } else if m.recs.contains_key(&pid) {
                            Err(InsertError::Duplicate)
                        } else if m.recs.len() == CAP {
                            Err(InsertError::Full)
                        } else {
                            Ok(())
                        };
                        assert_eq!(t.try_insert(p), want, "step {step}");
                        if want.is_ok() {
                            m.recs.insert(pid, p);
                            m.lists.entry(adj).or_default().push_front(pid);
                        }
                    }
                    4 | 5 => {
                        let want = ok_adj && m.recs.contains_key(&pid);
                        assert_eq!(t.set_adj(pid, adj), want, "step {step}");
                        if want {
                            m.unlink(pid);
                            m.recs.get_mut(&pid).unwrap().adj = adj;
                            m.lists.entry(adj).or_default().push_front(pid);
                        }
                    }
                    6 => {
                        let want = m.recs.get(&pid).copied();
                        if want.is_some() {
                            m.unlink(pid);
                            m.recs.remove(&pid);
                        }
                        assert_eq!(t.remove(pid).map(|(p, _)| p), want, "step {step}");
                    }
                    7 => {
                        let uid = rng.below(100) as i32;
                        let owner = rng.below(4) as i32 - 1;
                        let has = m.recs.contains_key(&pid);
                        assert_eq!(t.set_uid(pid, uid), has);
                        assert_eq!(t.set_owner(pid, owner), has);
                        if let Some(r) = m.recs.get_mut(&pid) {
                            r.uid = uid;
                            r.owner = owner;
                        }
                    }
                    8 => {
                        let owner = rng.below(3) as i32;
                        t.disown(owner);
                        for r in m.recs.values_mut().filter(|r| r.owner == owner) {
                            r.owner = NO_OWNER;
                        }
                    }
                    _ => {
                        if rng.below(4) == 0 {
                            let owner = rng.below(3) as i32;
                            let gone: Vec<i32> = m
                                .recs
                                .values()
                                .filter(|r| r.owner == owner || r.owner == NO_OWNER)
                                .map(|r| r.pid)
                                .collect();
                            for &pid in &gone {
                                m.unlink(pid);
                                m.recs.remove(&pid);
                            }
                            let mut removed = Vec::new();
                            t.remove_where(
                                |p| p.owner == owner || p.owner == NO_OWNER,
                                |p| removed.push(p.pid),
                            );
                            removed.sort();
                            assert_eq!(removed, gone, "step {step}");
                        }
                    }
                }
                assert_eq!(t.len(), m.recs.len());
                assert_eq!(t.get(pid), m.recs.get(&pid));
                if step % 97 == 0 {
                    check(&t);
                    for (&pid, r) in &m.recs {
                        assert_eq!(t.get(pid), Some(r));
                    }
                    for &adj in &adjs {
                        let want: Vec<i32> = m
                            .lists
                            .get(&adj)
                            .map(|l| l.iter().rev().copied().collect())
                            .unwrap_or_default();
                        assert_eq!(pids_at(&t, adj), want, "step {step} adj {adj}");
                        assert_eq!(t.tail(adj).map(|p| p.pid), want.first().copied());
                    }
                }
            }
        }
    }
}
