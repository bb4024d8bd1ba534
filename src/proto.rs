//! The lmkd wire protocol: pure encode/decode, no I/O, no allocation.
//!
//! Every field is a big-endian `i32`; word 0 is the command id and the
//! argument count is `len / 4 - 1`. The numbers here are mirrored in
//! `aidl/` (a test keeps the two in step).

/// Largest datagram we accept (a 3-record, 5-field LMK_PROCS_PRIO is 64 bytes).
pub const MAX_PACKET: usize = 64;
/// Length of the LMK_PROCKILL notification; AMS rejects any other size.
pub const PROCKILL_LEN: usize = 16;
/// Longest process name carried in a kill stats packet.
pub const STAT_NAME_MAX: usize = 127;
/// Fixed part of the kill stats packet (the name and its NUL follow).
pub const STAT_FIXED_LEN: usize = 86;
/// Largest kill stats packet.
pub const STAT_MAX_LEN: usize = STAT_FIXED_LEN + STAT_NAME_MAX + 1;
/// Most (minfree, adj) pairs in LMK_TARGET.
pub const MAX_TARGETS: usize = 6;
/// Most records in one LMK_PROCS_PRIO.
pub const MAX_BATCH: usize = 3;

/// Command and message ids.
pub mod id {
    pub const TARGET: i32 = 0;
    pub const PROCPRIO: i32 = 1;
    pub const PROCREMOVE: i32 = 2;
    pub const PROCPURGE: i32 = 3;
    pub const GETKILLCNT: i32 = 4;
    pub const SUBSCRIBE: i32 = 5;
    pub const PROCKILL: i32 = 6;
    pub const UPDATE_PROPS: i32 = 7;
    pub const STAT_KILL_OCCURRED: i32 = 8;
    pub const START_MONITORING: i32 = 9;
    pub const BOOT_COMPLETED: i32 = 10;
    pub const PROCS_PRIO: i32 = 11;
}

/// Process types carried by PROCPRIO.
pub mod ptype {
    pub const APP: i32 = 0;
    pub const SERVICE: i32 = 1;
}

/// LMK_SUBSCRIBE event ids.
pub mod event {
    pub const KILL: i32 = 0;
    pub const STAT: i32 = 1;
}

/// Kill reason codes (statsd values, carried in the kill stats packet).
pub mod reason {
    pub const PRESSURE_AFTER_KILL: i32 = 0;
    pub const NOT_RESPONDING: i32 = 1;
    pub const LOW_SWAP_AND_THRASHING: i32 = 2;
    pub const LOW_MEM_AND_SWAP: i32 = 3;
    pub const LOW_MEM_AND_THRASHING: i32 = 4;
    pub const DIRECT_RECL_AND_THRASHING: i32 = 5;
    pub const LOW_MEM_AND_SWAP_UTIL: i32 = 6;
    pub const LOW_FILECACHE_AFTER_THRASHING: i32 = 7;
    pub const LOW_MEM: i32 = 8;
    pub const DIRECT_RECL_STUCK: i32 = 9;
}

/// Bounds of `oom_score_adj`.
pub const OOM_ADJ_MIN: i32 = -1000;
pub const OOM_ADJ_MAX: i32 = 1000;

/// One process priority record (PROCPRIO or one PROCS_PRIO entry).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prio {
    pub pid: i32,
    pub uid: i32,
    pub adj: i32,
    pub ptype: i32,
    /// The framework already wrote `oom_score_adj`; only track it.
    pub for_lmkd_only: bool,
}

/// Up to [`MAX_BATCH`] records from one LMK_PROCS_PRIO.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrioBatch {
    recs: [Prio; MAX_BATCH],
    len: u8,
}

impl PrioBatch {
    pub fn as_slice(&self) -> &[Prio] {
        &self.recs[..self.len as usize]
    }
}

/// One legacy minfree level: below `minfree` pages, kill from `adj` up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Target {
    pub minfree: i32,
    pub adj: i32,
}

/// The minfree table ActivityManager sends on a 64-bit phone, in pages
/// (its KB levels x 1024 / 4096). The workload driver and tests use it.
pub const AMS_PHONE_TARGETS: [Target; MAX_TARGETS] = [
    Target {
        minfree: 18432,
        adj: 0,
    },
    Target {
        minfree: 23040,
        adj: 100,
    },
    Target {
        minfree: 27648,
        adj: 200,
    },
    Target {
        minfree: 32256,
        adj: 250,
    },
    Target {
        minfree: 55296,
        adj: 900,
    },
    Target {
        minfree: 80640,
        adj: 950,
    },
];

/// The LMK_TARGET table, 1 to [`MAX_TARGETS`] levels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetTable {
    levels: [Target; MAX_TARGETS],
    len: u8,
}

impl TargetTable {
    pub fn from_slice(levels: &[Target]) -> Option<Self> {
        if levels.len() > MAX_TARGETS {
            return None;
        }
        let mut t = TargetTable::default();
        t.levels[..levels.len()].copy_from_slice(levels);
        t.len = levels.len() as u8;
        Some(t)
    }

    pub fn as_slice(&self) -> &[Target] {
        &self.levels[..self.len as usize]
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A decoded client command. Values are not range-checked here: that is a
/// matter of semantics (see `server`), the codec only checks shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Target(TargetTable),
    ProcPrio(Prio),
    ProcRemove { pid: i32 },
    ProcPurge,
    GetKillCnt { min_adj: i32, max_adj: i32 },
    Subscribe { event: i32 },
    UpdateProps,
    StartMonitoring,
    BootCompleted,
    ProcsPrio(PrioBatch),
}

impl Command {
    pub fn id(&self) -> i32 {
        match self {
            Command::Target(_) => id::TARGET,
            Command::ProcPrio(_) => id::PROCPRIO,
            Command::ProcRemove { .. } => id::PROCREMOVE,
            Command::ProcPurge => id::PROCPURGE,
            Command::GetKillCnt { .. } => id::GETKILLCNT,
            Command::Subscribe { .. } => id::SUBSCRIBE,
            Command::UpdateProps => id::UPDATE_PROPS,
            Command::StartMonitoring => id::START_MONITORING,
            Command::BootCompleted => id::BOOT_COMPLETED,
            Command::ProcsPrio(_) => id::PROCS_PRIO,
        }
    }
}

/// Why a datagram could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer than 4 bytes: not even a command id.
    Short { len: usize },
    /// More than [`MAX_PACKET`] bytes.
    TooLong { len: usize },
    /// Length is not a whole number of 32-bit words.
    Unaligned { len: usize },
    /// A known command with an argument count it never has.
    BadArgCount { cmd: i32, nargs: usize },
    /// A command id we do not know (or a daemon-to-client id).
    UnknownCommand { cmd: i32 },
}

impl DecodeError {
    /// The command id, when the packet got far enough to carry one.
    pub fn command(&self) -> Option<i32> {
        match *self {
            DecodeError::BadArgCount { cmd, .. } | DecodeError::UnknownCommand { cmd } => Some(cmd),
            DecodeError::TooLong { .. }
            | DecodeError::Unaligned { .. }
            | DecodeError::Short { .. } => None,
        }
    }
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            DecodeError::Short { len } => write!(f, "packet of {len} bytes is too short"),
            DecodeError::TooLong { len } => {
                write!(f, "packet of {len} bytes is longer than {MAX_PACKET}")
            }
            DecodeError::Unaligned { len } => {
                write!(f, "packet of {len} bytes is not a whole number of words")
            }
            DecodeError::BadArgCount { cmd, nargs } => {
                write!(f, "command {cmd} with {nargs} arguments")
            }
            DecodeError::UnknownCommand { cmd } => write!(f, "unknown command id {cmd}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Reads word `i` of a packet already checked to be long enough.
fn word(buf: &[u8], i: usize) -> i32 {
    let o = i * 4;
    i32::from_be_bytes([buf[o], buf[o + 1], buf[o + 2], buf[o + 3]])
}

/// The command id of a packet, if it has at least one whole word. Used to
/// answer a malformed command that expects a reply with the reply's shape.
pub fn peek_id(buf: &[u8]) -> Option<i32> {
    (buf.len() >= 4).then(|| word(buf, 0))
}

/// Whether a command id expects a reply (GETKILLCNT, UPDATE_PROPS, BOOT_COMPLETED).
pub fn has_reply(cmd: i32) -> bool {
    matches!(cmd, id::GETKILLCNT | id::UPDATE_PROPS | id::BOOT_COMPLETED)
}

fn prio_at(buf: &[u8], first: usize, fields: usize) -> Prio {
    Prio {
        pid: word(buf, first),
        uid: word(buf, first + 1),
        adj: word(buf, first + 2),
        ptype: if fields >= 4 {
            word(buf, first + 3)
        } else {
            ptype::APP
        },
        for_lmkd_only: fields >= 5 && word(buf, first + 4) == 1,
    }
}

/// Decodes one client datagram.
pub fn decode(buf: &[u8]) -> Result<Command, DecodeError> {
    let len = buf.len();
    if len > MAX_PACKET {
        return Err(DecodeError::TooLong { len });
    }
    if len < 4 {
        return Err(DecodeError::Short { len });
    }
    if len % 4 != 0 {
        return Err(DecodeError::Unaligned { len });
    }
    let cmd = word(buf, 0);
    let nargs = len / 4 - 1;
    let bad = Err(DecodeError::BadArgCount { cmd, nargs });
    let arg = |i: usize| word(buf, i + 1);
    match cmd {
        id::TARGET => {
            if nargs == 0 || nargs % 2 != 0 || nargs / 2 > MAX_TARGETS {
                return bad;
            }
            let mut t = TargetTable::default();
            for i in 0..nargs / 2 {
                t.levels[i] = Target {
                    minfree: arg(2 * i),
                    adj: arg(2 * i + 1),
                };
            }
            t.len = (nargs / 2) as u8;
            Ok(Command::Target(t))
        }
        id::PROCPRIO => match nargs {
            3..=5 => Ok(Command::ProcPrio(prio_at(buf, 1, nargs))),
            _ => bad,
        },
        id::PROCREMOVE if nargs == 1 => Ok(Command::ProcRemove { pid: arg(0) }),
        id::PROCPURGE if nargs == 0 => Ok(Command::ProcPurge),
        id::GETKILLCNT if nargs == 2 => Ok(Command::GetKillCnt {
            min_adj: arg(0),
            max_adj: arg(1),
        }),
        id::SUBSCRIBE if nargs == 1 => Ok(Command::Subscribe { event: arg(0) }),
        id::UPDATE_PROPS if nargs == 0 => Ok(Command::UpdateProps),
        id::START_MONITORING if nargs == 0 => Ok(Command::StartMonitoring),
        id::BOOT_COMPLETED if nargs == 0 => Ok(Command::BootCompleted),
        id::PROCS_PRIO => {
            // 4, 8, 12 args: 4-field records; 5, 10, 15: 5-field records.
            let fields = match nargs {
                4 | 8 | 12 => 4,
                5 | 10 | 15 => 5,
                _ => return bad,
            };
            let mut b = PrioBatch::default();
            let n = nargs / fields;
            for i in 0..n {
                b.recs[i] = prio_at(buf, 1 + i * fields, fields);
            }
            b.len = n as u8;
            Ok(Command::ProcsPrio(b))
        }
        id::PROCREMOVE
        | id::PROCPURGE
        | id::GETKILLCNT
        | id::SUBSCRIBE
        | id::UPDATE_PROPS
        | id::START_MONITORING
        | id::BOOT_COMPLETED => bad,
        _ => Err(DecodeError::UnknownCommand { cmd }),
    }
}

/// Writes big-endian words into `out`, returning the filled prefix.
fn put_words<'a>(out: &'a mut [u8], words: &[i32]) -> &'a [u8] {
    for (i, w) in words.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
    }
    &out[..words.len() * 4]
}

/// Encodes a client command (used by our client modes, the workload
/// driver and tests). Returns the datagram as a prefix of `out`.
pub fn encode(cmd: &Command, out: &mut [u8; MAX_PACKET]) -> usize {
    let mut w = [0i32; MAX_PACKET / 4];
    w[0] = cmd.id();
    let n = match cmd {
        Command::Target(t) => {
            for (i, l) in t.as_slice().iter().enumerate() {
                w[1 + 2 * i] = l.minfree;
                w[2 + 2 * i] = l.adj;
            }
            1 + 2 * t.as_slice().len()
        }
        Command::ProcPrio(p) => {
            w[1..6].copy_from_slice(&[p.pid, p.uid, p.adj, p.ptype, p.for_lmkd_only as i32]);
            6
        }
        Command::ProcRemove { pid } => {
            w[1] = *pid;
            2
        }
        Command::GetKillCnt { min_adj, max_adj } => {
            w[1] = *min_adj;
            w[2] = *max_adj;
            3
        }
        Command::Subscribe { event } => {
            w[1] = *event;
            2
        }
        Command::ProcsPrio(b) => {
            let mut n = 1;
            for p in b.as_slice() {
                w[n..n + 5].copy_from_slice(&[
                    p.pid,
                    p.uid,
                    p.adj,
                    p.ptype,
                    p.for_lmkd_only as i32,
                ]);
                n += 5;
            }
            n
        }
        Command::ProcPurge
        | Command::UpdateProps
        | Command::StartMonitoring
        | Command::BootCompleted => 1,
    };
    put_words(out, &w[..n]).len()
}

impl PrioBatch {
    /// Builds a batch from up to [`MAX_BATCH`] records.
    pub fn from_slice(recs: &[Prio]) -> Option<Self> {
        if recs.is_empty() || recs.len() > MAX_BATCH {
            return None;
        }
        let mut b = PrioBatch::default();
        b.recs[..recs.len()].copy_from_slice(recs);
        b.len = recs.len() as u8;
        Some(b)
    }
}

/// Encodes a two-word reply `[cmd, value]`.
pub fn encode_reply(cmd: i32, value: i32, out: &mut [u8; 8]) -> &[u8] {
    put_words(out, &[cmd, value])
}

/// Decodes a two-word reply, checking it answers `cmd` (AMS matches a reply
/// by exact length and first word, and so do we).
pub fn decode_reply(cmd: i32, buf: &[u8]) -> Option<i32> {
    (buf.len() == 8 && word(buf, 0) == cmd).then(|| word(buf, 1))
}

/// Encodes the 16-byte LMK_PROCKILL notification.
pub fn encode_prockill(pid: i32, uid: i32, rss_kb: i32, out: &mut [u8; PROCKILL_LEN]) -> &[u8] {
    put_words(out, &[id::PROCKILL, pid, uid, rss_kb])
}

/// A decoded LMK_PROCKILL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcKill {
    pub pid: i32,
    pub uid: i32,
    pub rss_kb: i32,
}

pub fn decode_prockill(buf: &[u8]) -> Option<ProcKill> {
    (buf.len() == PROCKILL_LEN && word(buf, 0) == id::PROCKILL).then(|| ProcKill {
        pid: word(buf, 1),
        uid: word(buf, 2),
        rss_kb: word(buf, 3),
    })
}

/// The figures of one kill, as carried by LMK_STAT_KILL_OCCURRED. Memory
/// figures the daemon could not read are -1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KillStat {
    pub pgfault: i64,
    pub pgmajfault: i64,
    pub rss_bytes: i64,
    pub cache_bytes: i64,
    pub swap_bytes: i64,
    pub start_time_ns: i64,
    pub uid: i32,
    pub oom_score_adj: i32,
    pub min_oom_score: i32,
    pub free_mem_kb: i32,
    pub free_swap_kb: i32,
    pub reason: i32,
    pub thrashing: i32,
    pub max_thrashing: i32,
    name: [u8; STAT_NAME_MAX],
    name_len: u8,
}

impl Default for KillStat {
    fn default() -> Self {
        KillStat {
            pgfault: -1,
            pgmajfault: -1,
            rss_bytes: -1,
            cache_bytes: -1,
            swap_bytes: -1,
            start_time_ns: -1,
            uid: -1,
            oom_score_adj: 0,
            min_oom_score: 0,
            free_mem_kb: -1,
            free_swap_kb: -1,
            reason: -1,
            thrashing: 0,
            max_thrashing: 0,
            name: [0; STAT_NAME_MAX],
            name_len: 0,
        }
    }
}

impl KillStat {
    /// Sets the process name, cut to [`STAT_NAME_MAX`] bytes on a character
    /// boundary. AMS reads it with Java's `readUTF` (modified UTF-8), which
    /// rejects 4-byte sequences and invalid bytes: those become '?'.
    pub fn set_name(&mut self, name: &[u8]) {
        let mut n = 0;
        let mut i = 0;
        while i < name.len() {
            let b = name[i];
            let width = match b {
                0x00..=0x7F => 1,
                0xC2..=0xDF => 2,
                0xE0..=0xEF => 3,
                _ => 0,
            };
            let valid = width > 0
                && i + width <= name.len()
                && std::str::from_utf8(&name[i..i + width]).is_ok();
            let (src, used): (&[u8], usize) = if valid {
                (&name[i..i + width], width)
            } else {
                // Skip a whole 4-byte sequence if that is what it is.
                let skip = if (0xF0..=0xF4).contains(&b)
                    && i + 4 <= name.len()
                    && std::str::from_utf8(&name[i..i + 4]).is_ok()
                {
                    4
                } else {
                    1
                };
                (b"?", skip)
            };
            if n + src.len() > STAT_NAME_MAX {
                break;
            }
            self.name[n..n + src.len()].copy_from_slice(src);
            n += src.len();
            i += used;
        }
        self.name_len = n as u8;
    }

    pub fn name(&self) -> &[u8] {
        &self.name[..self.name_len as usize]
    }
}

/// Encodes the kill stats packet; returns its length (87 + name length).
pub fn encode_kill_stat(s: &KillStat, out: &mut [u8; STAT_MAX_LEN]) -> usize {
    out[0..4].copy_from_slice(&id::STAT_KILL_OCCURRED.to_be_bytes());
    let longs = [
        s.pgfault,
        s.pgmajfault,
        s.rss_bytes,
        s.cache_bytes,
        s.swap_bytes,
        s.start_time_ns,
    ];
    for (i, v) in longs.iter().enumerate() {
        out[4 + 8 * i..12 + 8 * i].copy_from_slice(&v.to_be_bytes());
    }
    let ints = [
        s.uid,
        s.oom_score_adj,
        s.min_oom_score,
        s.free_mem_kb,
        s.free_swap_kb,
        s.reason,
        s.thrashing,
        s.max_thrashing,
    ];
    for (i, v) in ints.iter().enumerate() {
        out[52 + 4 * i..56 + 4 * i].copy_from_slice(&v.to_be_bytes());
    }
    let name = s.name();
    out[84..86].copy_from_slice(&(name.len() as u16).to_be_bytes());
    out[86..86 + name.len()].copy_from_slice(name);
    out[86 + name.len()] = 0;
    STAT_FIXED_LEN + name.len() + 1
}

/// Decodes a kill stats packet (for the workload driver and tests).
pub fn decode_kill_stat(buf: &[u8]) -> Option<KillStat> {
    if buf.len() < STAT_FIXED_LEN || word(buf, 0) != id::STAT_KILL_OCCURRED {
        return None;
    }
    let long = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&buf[o..o + 8]);
        i64::from_be_bytes(b)
    };
    let int = |o: usize| word(&buf[o..], 0);
    let name_len = u16::from_be_bytes([buf[84], buf[85]]) as usize;
    if name_len > STAT_NAME_MAX || buf.len() < STAT_FIXED_LEN + name_len {
        return None;
    }
    let mut s = KillStat {
        pgfault: long(4),
        pgmajfault: long(12),
        rss_bytes: long(20),
        cache_bytes: long(28),
        swap_bytes: long(36),
        start_time_ns: long(44),
        uid: int(52),
        oom_score_adj: int(56),
        min_oom_score: int(60),
        free_mem_kb: int(64),
        free_swap_kb: int(68),
        reason: int(72),
        thrashing: int(76),
        max_thrashing: int(80),
        ..KillStat::default()
    };
    s.set_name(&buf[86..86 + name_len]);
    Some(s)
}
