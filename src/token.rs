//! What each descriptor in the core's epoll set is, as the `u64` epoll
//! carries: one enum, encoded when a descriptor is added and decoded when
//! it wakes the loop, so a new source is one variant, not a new constant
//! and a range check.

use crate::policy::Pressure;
use crate::server::MAX_CONNECTIONS;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token {
    /// The listening socket.
    Listen,
    /// The signalfd (SIGTERM, SIGINT, SIGHUP).
    Signal,
    /// A pressure trigger (PSI `some`/`full`, the early `some`, or a
    /// vmpressure eventfd).
    Pressure(Pressure),
    /// The polling timer.
    Timer,
    /// The reaper's completion ring.
    Reaper,
    /// The in-flight victim's pidfd (readable once it exited).
    Victim,
    /// The control socket's doorbell (lmkctl asks for something).
    Control,
    /// The loader thread's doorbell (a reload or a re-opened source is ready).
    Loader,
    /// The watchdog's kill reports.
    Watchdog,
    /// A client connection, by server slot.
    Conn(usize),
}

const LISTEN: u64 = 0;
const SIGNAL: u64 = 1;
const PARTIAL: u64 = 2;
const COMPLETE: u64 = 3;
const TIMER: u64 = 4;
const REAPER: u64 = 5;
const VICTIM: u64 = 6;
const CONTROL: u64 = 7;
const LOADER: u64 = 8;
const WATCHDOG: u64 = 9;
const EARLY: u64 = 10;
const CONN: u64 = 16;

impl Token {
    pub fn encode(self) -> u64 {
        match self {
            Token::Listen => LISTEN,
            Token::Signal => SIGNAL,
            // Poll is the timer's re-check, never a descriptor; it shares
            // the partial code rather than panicking.
            Token::Pressure(Pressure::Partial | Pressure::Poll) => PARTIAL,
            Token::Pressure(Pressure::Complete) => COMPLETE,
            Token::Pressure(Pressure::Early) => EARLY,
            Token::Timer => TIMER,
            Token::Reaper => REAPER,
            Token::Victim => VICTIM,
            Token::Control => CONTROL,
            Token::Loader => LOADER,
            Token::Watchdog => WATCHDOG,
            Token::Conn(slot) => CONN + slot as u64,
        }
    }

    /// None for a value no token encodes to.
    pub fn decode(v: u64) -> Option<Token> {
        Some(match v {
            LISTEN => Token::Listen,
            SIGNAL => Token::Signal,
            PARTIAL => Token::Pressure(Pressure::Partial),
            COMPLETE => Token::Pressure(Pressure::Complete),
            EARLY => Token::Pressure(Pressure::Early),
            TIMER => Token::Timer,
            REAPER => Token::Reaper,
            VICTIM => Token::Victim,
            CONTROL => Token::Control,
            LOADER => Token::Loader,
            WATCHDOG => Token::Watchdog,
            v if (CONN..CONN + MAX_CONNECTIONS as u64).contains(&v) => {
                Token::Conn((v - CONN) as usize)
            }
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_token_round_trips() {
        let mut all = vec![
            Token::Listen,
            Token::Signal,
            Token::Pressure(Pressure::Partial),
            Token::Pressure(Pressure::Complete),
            Token::Pressure(Pressure::Early),
            Token::Timer,
            Token::Reaper,
            Token::Victim,
            Token::Control,
            Token::Loader,
            Token::Watchdog,
        ];
        all.extend((0..MAX_CONNECTIONS).map(Token::Conn));
        let mut seen = std::collections::HashSet::new();
        for t in all {
            assert!(seen.insert(t.encode()), "{t:?} shares its code");
            assert_eq!(Token::decode(t.encode()), Some(t));
        }
    }

    #[test]
    fn unknown_values_decode_to_none() {
        for v in [11, 15, CONN + MAX_CONNECTIONS as u64, u64::MAX] {
            assert_eq!(Token::decode(v), None, "{v}");
        }
    }
}
