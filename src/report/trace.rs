//! atrace slices for Perfetto: each kill is a `lmk,<pid>,<reason>,<adj>,
//! <min_adj>,<max_thrashing>` slice around the signal, written to tracefs'
//! `trace_marker` (Perfetto turns these into its `mem.lmk` track).
//!
//! The file is opened once at start-up; the writes happen on the thread
//! that sends the signal, so they format into a stack buffer and never
//! allocate. When tracing is off (`tracing_on` reads 0) nothing is written:
//! one `pread` per kill is all it costs.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::sys;

/// tracefs mount points, newest first.
const TRACEFS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// The atrace writer. Without tracefs it is inert.
pub struct Marker {
    marker: Option<File>,
    /// `tracing_on`; absent means "always on" (a plain file in tests).
    on: Option<File>,
    /// The tracing process (atrace slices are per process).
    pid: i32,
    /// A begin was written and its end is due.
    open: bool,
}

/// Longest line: "B|" + 6 numbers of at most 12 bytes + separators.
const LINE_MAX: usize = 96;

/// A line on the stack.
struct Line {
    buf: [u8; LINE_MAX],
    len: usize,
}

impl Line {
    fn new() -> Line {
        Line {
            buf: [0; LINE_MAX],
            len: 0,
        }
    }

    fn text(&mut self, s: &[u8]) -> &mut Line {
        let n = s.len().min(LINE_MAX - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
        self
    }

    fn int(&mut self, v: i64) -> &mut Line {
        let mut tmp = [0u8; 12];
        let digits = sys::fmt_i64(v, &mut tmp);
        let n = digits.len().min(LINE_MAX - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&digits[..n]);
        self.len += n;
        self
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Marker {
    /// Opens `trace_marker` under the first tracefs mount that has one.
    /// Never fails: without tracefs (or permission) the marker is inert and
    /// the reason is logged once, here, at start-up.
    pub fn open() -> Marker {
        for dir in TRACEFS {
            if let Ok(m) = Marker::open_in(Path::new(dir)) {
                return m;
            }
        }
        log::info!("no writable tracefs trace_marker; kills are not traced");
        Marker::inert()
    }

    /// Opens `<dir>/trace_marker` and, if there is one, `<dir>/tracing_on`.
    pub fn open_in(dir: &Path) -> io::Result<Marker> {
        let path = dir.join("trace_marker");
        let marker = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", path.display())))?;
        Ok(Marker {
            marker: Some(marker),
            on: File::open(dir.join("tracing_on")).ok(),
            pid: std::process::id() as i32,
            open: false,
        })
    }

    /// A marker that writes nothing.
    pub fn inert() -> Marker {
        Marker {
            marker: None,
            on: None,
            pid: 0,
            open: false,
        }
    }

    /// Whether tracing is on now.
    pub fn enabled(&self) -> bool {
        if self.marker.is_none() {
            return false;
        }
        let Some(on) = &self.on else {
            return true;
        };
        let mut b = [0u8; 1];
        matches!(on.read_at(&mut b, 0), Ok(1) if b[0] == b'1')
    }

    /// Opens the kill's slice; call right before the signal. Pair with [`Marker::end`].
    pub fn begin_kill(
        &mut self,
        pid: i32,
        reason: i32,
        adj: i32,
        min_adj: i32,
        max_thrashing: i64,
    ) {
        self.open = false;
        if !self.enabled() {
            return;
        }
        let mut l = Line::new();
        l.text(b"B|")
            .int(self.pid.into())
            .text(b"|lmk,")
            .int(pid.into())
            .text(b",")
            .int(reason.into())
            .text(b",")
            .int(adj.into())
            .text(b",")
            .int(min_adj.into())
            .text(b",")
            .int(max_thrashing);
        self.open = self.write(l.bytes());
    }

    /// Closes the slice opened by [`Marker::begin_kill`], if it was written.
    pub fn end(&mut self) {
        if !std::mem::take(&mut self.open) {
            return;
        }
        let mut l = Line::new();
        l.text(b"E|").int(self.pid.into());
        self.write(l.bytes());
    }

    fn write(&self, line: &[u8]) -> bool {
        // One write(2) per line: the kernel takes a marker write whole.
        // Failure is not worth a log line on the kill path.
        self.marker
            .as_ref()
            .is_some_and(|mut f| f.write(line).is_ok_and(|n| n == line.len()))
    }
}
