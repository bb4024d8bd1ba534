//! A `log` backend that keeps every record (Info and above, or down to the
//! facade's max level if a test lowers it) in memory, for tests and benches
//! that run the daemon in-process and read what it said.
//! Lines look like `INFO lowmemorykiller: Kill '...' (...)`.

use std::sync::{Mutex, Once};
use std::time::Duration;

static LINES: Mutex<String> = Mutex::new(String::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            let line = format!("{} {}: {}\n", r.level(), r.target(), r.args());
            LINES
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_str(&line);
        }
    }
    fn flush(&self) {}
}

/// Installs the capture as this process's logger (once).
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = log::set_logger(&Capture);
        log::set_max_level(log::LevelFilter::Info);
    });
}

/// Everything logged so far.
pub fn text() -> String {
    LINES.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Waits until the log contains `needle`; panics with the log if not.
pub fn wait_for(needle: &str, timeout: Duration) -> String {
    assert!(
        super::eventually(timeout, || text().contains(needle)),
        "log never showed {needle:?}:\n{}",
        text()
    );
    text()
}
