//! Logging backend for the `log` facade.
//!
//! On Android every record goes to logcat under the tag [`KILL_TAG`]
//! (`lowmemorykiller`), as lmkd logs: tools and lmkd's device tests read
//! lmkd's lines under that one tag.
//! Elsewhere each record is one line on stderr,
//! `<UTC timestamp> <LEVEL> <target>: <message>`, formatted on the stack and
//! written with a single write(2) so lines from threads never interleave and
//! logging does not allocate. Kill lines use the target [`KILL_TAG`] there.
//!
//! The level follows the `debug` config key: Debug when set, Info otherwise.

use log::LevelFilter;

/// Logcat tag of every line on Android; log target of kill lines elsewhere.
pub const KILL_TAG: &str = crate::report::KILL_TARGET;

fn level_for(debug: bool) -> LevelFilter {
    if debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    }
}

/// Install the logger (the first call wins; later calls only leave the
/// level alone) and set the level from `debug`.
pub fn init(debug: bool) {
    if backend::install() {
        set_debug(debug);
    }
}

/// Switch between Debug and Info at run time (config reload).
pub fn set_debug(debug: bool) {
    log::set_max_level(level_for(debug));
}

#[cfg(target_os = "android")]
mod backend {
    use super::KILL_TAG;
    use android_logger::{AndroidLogger, Config};
    use log::LevelFilter;
    use std::sync::OnceLock;

    static LOGGER: OnceLock<AndroidLogger> = OnceLock::new();

    pub(super) fn install() -> bool {
        // The facade's max level does the filtering (set_debug); the message
        // is logged as is, without android_logger's module-path prefix, so
        // kill lines keep the exact wording tools expect.
        let logger = LOGGER.get_or_init(|| {
            AndroidLogger::new(
                Config::default()
                    .with_tag(KILL_TAG)
                    .with_max_level(LevelFilter::Trace)
                    .format(|w, r| write!(w, "{}", r.args())),
            )
        });
        log::set_logger(logger).is_ok()
    }
}

#[cfg(not(target_os = "android"))]
mod backend {
    use super::line::{format_line, LineBuf};
    use log::{Log, Metadata, Record};

    struct Stderr;

    impl Log for Stderr {
        fn enabled(&self, m: &Metadata) -> bool {
            m.level() <= log::max_level()
        }

        fn log(&self, r: &Record) {
            if !self.enabled(r.metadata()) {
                return;
            }
            let (secs, millis) = now_realtime();
            let mut buf = LineBuf::new();
            format_line(&mut buf, secs, millis, r.level(), r.target(), r.args());
            let bytes = buf.as_bytes();
            // SAFETY: `bytes` is a live buffer of `bytes.len()` bytes; fd 2
            // is ours to write. A failed write has nowhere to be reported.
            let _ = unsafe { libc::write(libc::STDERR_FILENO, bytes.as_ptr().cast(), bytes.len()) };
        }

        fn flush(&self) {}
    }

    fn now_realtime() -> (i64, u32) {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid out-pointer; CLOCK_REALTIME always exists.
        // On the impossible failure the timestamp reads as the epoch.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
        (ts.tv_sec, (ts.tv_nsec / 1_000_000).clamp(0, 999) as u32)
    }

    static LOGGER: Stderr = Stderr;

    pub(super) fn install() -> bool {
        log::set_logger(&LOGGER).is_ok()
    }
}

/// Line formatting without allocation (pure; tested on data).
#[cfg_attr(target_os = "android", allow(dead_code))]
mod line {
    use std::fmt::{self, Write};

    /// Below PIPE_BUF so one write(2) to a pipe is atomic.
    pub const LINE_MAX: usize = 2048;
    const ELLIPSIS: &[u8] = b"...";

    /// A fixed line buffer; overflowing text is cut and marked with "...".
    pub struct LineBuf {
        buf: [u8; LINE_MAX],
        len: usize,
        truncated: bool,
    }

    impl LineBuf {
        pub fn new() -> Self {
            LineBuf {
                buf: [0; LINE_MAX],
                len: 0,
                truncated: false,
            }
        }

        /// The finished line (always ends with '\n').
        pub fn as_bytes(&mut self) -> &[u8] {
            // Room for "...\n" is always kept back by write_str.
            if self.truncated {
                self.buf[self.len..self.len + ELLIPSIS.len()].copy_from_slice(ELLIPSIS);
                self.len += ELLIPSIS.len();
                self.truncated = false;
            }
            if self.len == 0 || self.buf[self.len - 1] != b'\n' {
                self.buf[self.len] = b'\n';
                self.len += 1;
            }
            &self.buf[..self.len]
        }
    }

    impl Write for LineBuf {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let room = LINE_MAX - ELLIPSIS.len() - 1 - self.len;
            if s.len() <= room {
                self.buf[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
                self.len += s.len();
                return Ok(());
            }
            // Cut on a char boundary so the line stays valid UTF-8.
            let mut cut = room;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            self.buf[self.len..self.len + cut].copy_from_slice(&s.as_bytes()[..cut]);
            self.len += cut;
            self.truncated = true;
            // Stop formatting: nothing more fits.
            Err(fmt::Error)
        }
    }

    /// (year, month, day) of a day count since 1970-01-01 (proleptic
    /// Gregorian; the standard era-based conversion).
    pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        (year, month, day)
    }

    /// `2025-01-02T03:04:05.678Z INFO target: message\n`
    pub fn format_line(
        out: &mut LineBuf,
        secs: i64,
        millis: u32,
        level: log::Level,
        target: &str,
        args: &fmt::Arguments<'_>,
    ) {
        let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
        let s = secs.rem_euclid(86_400);
        // A truncated line is still written; the error only stops formatting.
        let _ = write!(
            out,
            "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z {level:<5} {target}: {args}",
            s / 3600,
            s / 60 % 60,
            s % 60,
        );
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn line(secs: i64, millis: u32, target: &str, msg: &str) -> String {
            let mut b = LineBuf::new();
            format_line(
                &mut b,
                secs,
                millis,
                log::Level::Info,
                target,
                &format_args!("{msg}"),
            );
            String::from_utf8(b.as_bytes().to_vec()).unwrap()
        }

        #[test]
        fn formats_timestamp_level_target() {
            assert_eq!(
                line(0, 5, "lmkd::psi", "hello"),
                "1970-01-01T00:00:00.005Z INFO  lmkd::psi: hello\n"
            );
            // 2024-02-29 12:34:56 UTC (leap day).
            assert_eq!(
                line(1_709_210_096, 999, "lowmemorykiller", "Kill 'x'"),
                "2024-02-29T12:34:56.999Z INFO  lowmemorykiller: Kill 'x'\n"
            );
        }

        #[test]
        fn dates() {
            assert_eq!(civil_from_days(0), (1970, 1, 1));
            assert_eq!(civil_from_days(-1), (1969, 12, 31));
            assert_eq!(civil_from_days(11_016), (2000, 2, 29));
            assert_eq!(civil_from_days(20_454), (2026, 1, 1));
        }

        #[test]
        fn long_lines_are_cut_on_a_char_boundary() {
            let msg = "é".repeat(LINE_MAX);
            let l = line(0, 0, "t", &msg);
            assert!(l.len() <= LINE_MAX, "{}", l.len());
            assert!(l.ends_with("...\n"));
        }
    }
}
