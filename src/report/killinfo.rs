//! lmkd's `killinfo` event (event log tag 10195355): one record per kill
//! with lmkd's fields in lmkd's order. On Android it goes to the events
//! buffer as a binary event (what `logcat -b events` and statsd readers
//! decode); elsewhere the same values go in one text line,
//! `killinfo: [pid,uid,...]`. Written by the logging thread, never the core.
//!
//! Figures we do not measure are 0, as lmkd writes them where a kernel lacks
//! them: ION heaps, GPU, the wakeup counters other than the time since the
//! event, and the I/O and CPU PSI averages.

use std::fmt;

use log::Level;

use super::logline::Sink;
use super::KILL_TARGET;
use crate::history::KillRecord;

/// The event log tag of `killinfo`.
pub const TAG: u32 = 10_195_355;

/// Number of values in one record.
pub const FIELDS: usize = 38;

/// Field names in record order (as in the event tag's description).
pub const NAMES: [&str; FIELDS] = [
    "Pid",
    "Uid",
    "OomAdj",
    "MinOomAdj",
    "TaskSize",
    "KillReason",
    "MemFree",
    "Cached",
    "SwapCached",
    "Buffers",
    "Shmem",
    "Unevictable",
    "SwapTotal",
    "SwapFree",
    "ActiveAnon",
    "InactiveAnon",
    "ActiveFile",
    "InactiveFile",
    "SReclaimable",
    "SUnreclaim",
    "KernelStack",
    "PageTables",
    "IonHeap",
    "IonHeapPool",
    "CmaFree",
    "MsSinceEvent",
    "MsSincePrevWakeup",
    "WakeupsSinceEvent",
    "SkippedWakeups",
    "TaskSwapSize",
    "GPU",
    "Thrashing",
    "MaxThrashing",
    "PsiMemSome",
    "PsiMemFull",
    "PsiIoSome",
    "PsiIoFull",
    "PsiCpuSome",
];

/// One value of the record: the event format knows 32-bit ints and floats.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Int(i32),
    Float(f32),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v:.2}"),
        }
    }
}

fn int(v: u64) -> Value {
    Value::Int(v.min(i32::MAX as u64) as i32)
}

/// PSI averages are kept in hundredths of a percent.
fn pct(hundredths: u32) -> Value {
    Value::Float(hundredths as f32 / 100.0)
}

/// The record's values, in lmkd's order.
pub fn fields(k: &KillRecord) -> [Value; FIELDS] {
    let m = &k.mem;
    let f = &k.figures;
    [
        Value::Int(k.pid),
        Value::Int(k.uid),
        Value::Int(k.adj),
        Value::Int(k.kill.min_adj),
        int(k.rss_kb),
        Value::Int(k.kill.reason.code()),
        int(m.free_kb),
        int(m.cached_kb),
        int(m.swap_cached_kb),
        int(m.buffers_kb),
        int(m.shmem_kb),
        int(m.unevictable_kb),
        int(m.swap_total_kb),
        int(m.swap_free_kb),
        int(m.active_anon_kb),
        int(m.inactive_anon_kb),
        int(m.active_file_kb),
        int(m.inactive_file_kb),
        int(m.sreclaimable_kb),
        int(m.sunreclaim_kb),
        int(m.kernel_stack_kb),
        int(m.page_tables_kb),
        Value::Int(0),
        Value::Int(0),
        int(m.cma_free_kb),
        int(k.event_to_signal_us / 1000),
        Value::Int(0),
        Value::Int(0),
        Value::Int(0),
        int(k.swap_kb),
        Value::Int(0),
        int(f.thrashing_pct),
        int(f.max_thrashing_pct),
        pct(k.psi.some_avg10),
        pct(k.psi.full_avg10),
        Value::Float(0.0),
        Value::Float(0.0),
        Value::Float(0.0),
    ]
}

// Binary event encoding (liblog's event format): a list, then each value
// as a type byte and its little-endian bytes.
const EVENT_TYPE_INT: u8 = 0;
const EVENT_TYPE_LIST: u8 = 3;
const EVENT_TYPE_FLOAT: u8 = 4;

/// Bytes of an encoded record.
pub const EVENT_LEN: usize = 2 + FIELDS * 5;

/// Encodes the record as the payload of a binary event (without the tag).
pub fn encode(values: &[Value; FIELDS], out: &mut [u8; EVENT_LEN]) {
    out[0] = EVENT_TYPE_LIST;
    out[1] = FIELDS as u8;
    for (v, slot) in values.iter().zip(out[2..].chunks_exact_mut(5)) {
        let (ty, bytes) = match *v {
            Value::Int(i) => (EVENT_TYPE_INT, i.to_le_bytes()),
            Value::Float(x) => (EVENT_TYPE_FLOAT, x.to_le_bytes()),
        };
        slot[0] = ty;
        slot[1..].copy_from_slice(&bytes);
    }
}

/// The text form: `killinfo: [v1,v2,...]`.
pub struct Line<'a>(pub &'a [Value; FIELDS]);

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("killinfo: [")?;
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{v}")?;
        }
        f.write_str("]")
    }
}

/// Writes the record for one kill: the events buffer on Android, a text
/// line elsewhere.
pub fn write(k: &KillRecord, out: &mut dyn Sink) {
    let values = fields(k);
    if cfg!(target_os = "android") {
        let mut ev = [0u8; EVENT_LEN];
        encode(&values, &mut ev);
        if let Err(e) = events::write(TAG, &ev) {
            out.line(
                Level::Warn,
                "lmkd",
                format_args!("writing the killinfo event failed: {e}"),
            );
        }
    } else {
        out.line(Level::Info, KILL_TARGET, format_args!("{}", Line(&values)));
    }
}

#[cfg(target_os = "android")]
mod events {
    use std::io;

    extern "C" {
        // liblog (linked by android_logger): writes a binary event record
        // with `tag` to the events buffer.
        fn __android_log_bwrite(tag: i32, payload: *const libc::c_void, len: libc::size_t) -> i32;
    }

    pub fn write(tag: u32, payload: &[u8]) -> io::Result<()> {
        // SAFETY: `payload` is a live buffer of `payload.len()` bytes that
        // liblog only reads during the call.
        let r = unsafe { __android_log_bwrite(tag as i32, payload.as_ptr().cast(), payload.len()) };
        if r < 0 {
            return Err(io::Error::from_raw_os_error(-r));
        }
        Ok(())
    }
}

#[cfg(not(target_os = "android"))]
mod events {
    use std::io;

    /// Never called off Android (the text line is written instead).
    pub fn write(_tag: u32, _payload: &[u8]) -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}
