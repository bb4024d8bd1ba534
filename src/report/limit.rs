//! Flood control for the log: at most [`BURST`] lines of one kind per
//! [`WINDOW_MS`]; the rest are counted and summed up in one line when the
//! window closes. A client sending 50,000 malformed packets a second would
//! otherwise push the kill history out of a device's log buffer.
//!
//! Runs on the logging thread only (it may allocate); kinds are few and
//! fixed, so a short list beats a map.

/// Lines of one kind let through per window.
pub const BURST: u32 = 5;
/// Length of a window, ms.
pub const WINDOW_MS: u64 = 1000;

struct Window {
    kind: &'static str,
    start_ms: u64,
    passed: u32,
    suppressed: u64,
}

pub struct Limiter {
    burst: u32,
    window_ms: u64,
    windows: Vec<Window>,
}

impl Limiter {
    pub fn new(burst: u32, window_ms: u64) -> Limiter {
        Limiter {
            burst,
            window_ms: window_ms.max(1),
            windows: Vec::new(),
        }
    }

    /// Whether a line of `kind` may be written at `now_ms`. When this call
    /// closes a window that suppressed lines, `said(kind, count)` runs
    /// first, so the summary comes before the next line of that kind.
    pub fn allow(
        &mut self,
        kind: &'static str,
        now_ms: u64,
        said: &mut dyn FnMut(&'static str, u64),
    ) -> bool {
        let i = match self.windows.iter().position(|w| w.kind == kind) {
            Some(i) => i,
            None => {
                self.windows.push(Window {
                    kind,
                    start_ms: now_ms,
                    passed: 0,
                    suppressed: 0,
                });
                self.windows.len() - 1
            }
        };
        let w = &mut self.windows[i];
        if now_ms.saturating_sub(w.start_ms) >= self.window_ms {
            close(w, now_ms, said);
        }
        if w.passed < self.burst {
            w.passed += 1;
            true
        } else {
            w.suppressed += 1;
            false
        }
    }

    /// Closes every window that has run its length and reports what it
    /// suppressed; call periodically so a flood that stops is still summed up.
    pub fn flush(&mut self, now_ms: u64, said: &mut dyn FnMut(&'static str, u64)) {
        for w in &mut self.windows {
            if w.suppressed > 0 && now_ms.saturating_sub(w.start_ms) >= self.window_ms {
                close(w, now_ms, said);
            }
        }
    }

    /// When the earliest window that suppressed lines closes: the logging
    /// thread sleeps until then, or until the next note when None.
    pub fn next_flush_ms(&self) -> Option<u64> {
        self.windows
            .iter()
            .filter(|w| w.suppressed > 0)
            .map(|w| w.start_ms + self.window_ms)
            .min()
    }
}

fn close(w: &mut Window, now_ms: u64, said: &mut dyn FnMut(&'static str, u64)) {
    if w.suppressed > 0 {
        said(w.kind, w.suppressed);
    }
    w.start_ms = now_ms;
    w.passed = 0;
    w.suppressed = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rest_is_counted_once() {
        let mut l = Limiter::new(3, 1000);
        let mut said = Vec::new();
        let passed = (0..1000)
            .filter(|_| l.allow("x", 10, &mut |k, n| said.push((k, n))))
            .count();
        assert_eq!(passed, 3);
        assert!(said.is_empty());
        assert_eq!(l.next_flush_ms(), Some(1010));
        l.flush(500, &mut |k, n| said.push((k, n)));
        assert!(said.is_empty(), "window closed early");
        l.flush(1010, &mut |k, n| said.push((k, n)));
        assert_eq!(said, [("x", 997)]);
        assert_eq!(l.next_flush_ms(), None, "nothing left to sum up");
        // Nothing left to say; the next window lets a burst through again.
        l.flush(5000, &mut |k, n| said.push((k, n)));
        assert_eq!(said.len(), 1);
        assert!(l.allow("x", 5000, &mut |_, _| panic!("nothing suppressed")));
    }

    #[test]
    fn kinds_do_not_share_a_budget() {
        let mut l = Limiter::new(2, 1000);
        let mut said = Vec::new();
        for _ in 0..10 {
            l.allow("a", 0, &mut |k, n| said.push((k, n)));
        }
        assert!(l.allow("b", 0, &mut |k, n| said.push((k, n))));
        // A new window closed by a line of that kind says the count first.
        assert!(l.allow("a", 1000, &mut |k, n| said.push((k, n))));
        assert_eq!(said, [("a", 8)]);
    }
}
