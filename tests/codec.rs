//! Byte-exact vectors for the lmkd wire codec (`lmkd::proto`).
//!
//! Every expected packet is written out by hand, big-endian, from
//! `src/PROTOCOL.md`, so a codec change that drifts from the wire format fails
//! here even if encode and decode drift together.
//!
//! This binary installs a per-thread counting allocator: the codec and the
//! process table must not allocate on the daemon's hot path, and a global
//! allocator can only be set per test binary.

mod common;

use lmkd::proto::{
    self, decode, decode_kill_stat, decode_prockill, decode_reply, encode, encode_kill_stat,
    encode_prockill, encode_reply, has_reply, id, peek_id, Command, DecodeError, KillStat, Prio,
    PrioBatch, ProcKill, Target, TargetTable, MAX_PACKET, PROCKILL_LEN, STAT_MAX_LEN,
    STAT_NAME_MAX,
};

use common::counting::{allocations, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

// ---------------------------------------------------------------------------
// Helpers

fn enc(cmd: &Command) -> Vec<u8> {
    let mut out = [0u8; MAX_PACKET];
    let n = encode(cmd, &mut out);
    out[..n].to_vec()
}

/// Decodes `bytes`, checks that encoding the result decodes to the same
/// command, and returns the command.
fn decode_rt(bytes: &[u8]) -> Command {
    let cmd = decode(bytes).unwrap_or_else(|e| panic!("{bytes:02x?}: {e}"));
    let again = enc(&cmd);
    assert_eq!(decode(&again), Ok(cmd), "round trip of {bytes:02x?}");
    cmd
}

/// Like [`decode_rt`], and also checks that encoding reproduces `bytes`
/// exactly (for the forms our encoder emits).
fn decode_exact(bytes: &[u8]) -> Command {
    let cmd = decode_rt(bytes);
    assert_eq!(enc(&cmd), bytes, "encoding of {cmd:?}");
    cmd
}

fn prio(pid: i32, uid: i32, adj: i32, ptype: i32, for_lmkd_only: bool) -> Prio {
    Prio {
        pid,
        uid,
        adj,
        ptype,
        for_lmkd_only,
    }
}

fn batch(cmd: Command) -> Vec<Prio> {
    match cmd {
        Command::ProcsPrio(b) => b.as_slice().to_vec(),
        other => panic!("expected ProcsPrio, got {other:?}"),
    }
}

/// A packet of `id` followed by `nargs` arguments 1, 2, 3, ...
fn packet(id: i32, nargs: usize) -> Vec<u8> {
    let mut v = id.to_be_bytes().to_vec();
    for a in 1..=nargs as i32 {
        v.extend_from_slice(&a.to_be_bytes());
    }
    v
}

// ---------------------------------------------------------------------------
// Client commands

#[test]
fn target_one_pair() {
    let bytes = [
        0x00, 0x00, 0x00, 0x00, // LMK_TARGET
        0x00, 0x00, 0x48, 0x00, // minfree 18432 pages
        0x00, 0x00, 0x00, 0x00, // adj 0
    ];
    let Command::Target(t) = decode_exact(&bytes) else {
        panic!()
    };
    assert_eq!(
        t.as_slice(),
        [Target {
            minfree: 18432,
            adj: 0
        }]
    );
}

#[test]
fn target_six_pairs() {
    // AMS's usual table for a 64-bit phone.
    let bytes = [
        0x00, 0x00, 0x00, 0x00, // LMK_TARGET
        0x00, 0x00, 0x48, 0x00, 0x00, 0x00, 0x00, 0x00, // 18432:0
        0x00, 0x00, 0x5A, 0x00, 0x00, 0x00, 0x00, 0x64, // 23040:100
        0x00, 0x00, 0x6C, 0x00, 0x00, 0x00, 0x00, 0xC8, // 27648:200
        0x00, 0x00, 0x7E, 0x00, 0x00, 0x00, 0x00, 0xFA, // 32256:250
        0x00, 0x00, 0xD8, 0x00, 0x00, 0x00, 0x03, 0x84, // 55296:900
        0x00, 0x01, 0x3B, 0x00, 0x00, 0x00, 0x03, 0xB6, // 80640:950
    ];
    assert_eq!(bytes.len(), 52);
    let Command::Target(t) = decode_exact(&bytes) else {
        panic!()
    };
    let want = proto::AMS_PHONE_TARGETS;
    assert_eq!(t.as_slice(), want);
    assert_eq!(TargetTable::from_slice(&want), Some(t));
}

#[test]
fn target_negative_values_survive() {
    // The codec checks shape only; odd values are the server's business.
    let bytes = [
        0x00, 0x00, 0x00, 0x00, //
        0xFF, 0xFF, 0xFF, 0xFF, // -1
        0xFF, 0xFF, 0xFC, 0x18, // -1000
    ];
    let Command::Target(t) = decode_exact(&bytes) else {
        panic!()
    };
    assert_eq!(
        t.as_slice(),
        [Target {
            minfree: -1,
            adj: -1000
        }]
    );
}

#[test]
fn procprio_three_args() {
    let bytes = [
        0x00, 0x00, 0x00, 0x01, // LMK_PROCPRIO
        0x00, 0x00, 0x04, 0xD2, // pid 1234
        0x00, 0x00, 0x27, 0x8B, // uid 10123
        0x00, 0x00, 0x03, 0x84, // adj 900
    ];
    // Our encoder always emits the 5-arg form, so only a round trip here.
    let cmd = decode_rt(&bytes);
    assert_eq!(
        cmd,
        Command::ProcPrio(prio(1234, 10123, 900, proto::ptype::APP, false))
    );
}

#[test]
fn procprio_four_args() {
    let bytes = [
        0x00, 0x00, 0x00, 0x01, // LMK_PROCPRIO
        0x00, 0x01, 0x23, 0x45, // pid 74565
        0x00, 0x00, 0x03, 0xE8, // uid 1000
        0xFF, 0xFF, 0xFC, 0xE0, // adj -800
        0x00, 0x00, 0x00, 0x01, // PROC_TYPE_SERVICE
    ];
    let cmd = decode_rt(&bytes);
    assert_eq!(
        cmd,
        Command::ProcPrio(prio(74565, 1000, -800, proto::ptype::SERVICE, false))
    );
}

#[test]
fn procprio_five_args() {
    let bytes = [
        0x00, 0x00, 0x00, 0x01, // LMK_PROCPRIO
        0x00, 0x00, 0x04, 0xD2, // pid 1234
        0x00, 0x00, 0x27, 0x8B, // uid 10123
        0x00, 0x00, 0x00, 0xC8, // adj 200
        0x00, 0x00, 0x00, 0x00, // PROC_TYPE_APP
        0x00, 0x00, 0x00, 0x01, // for_lmkd_only
    ];
    let cmd = decode_exact(&bytes);
    assert_eq!(cmd, Command::ProcPrio(prio(1234, 10123, 200, 0, true)));

    let mut off = bytes;
    off[23] = 0x00;
    assert_eq!(
        decode_exact(&off),
        Command::ProcPrio(prio(1234, 10123, 200, 0, false))
    );

    // Only exactly 1 means "already written"; other values are treated as 0
    // (the field is a C bool on the client side).
    let mut two = bytes;
    two[23] = 0x02;
    assert_eq!(
        decode_rt(&two),
        Command::ProcPrio(prio(1234, 10123, 200, 0, false))
    );
}

#[test]
fn procremove() {
    let bytes = [0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x04, 0xD2];
    assert_eq!(decode_exact(&bytes), Command::ProcRemove { pid: 1234 });
}

#[test]
fn procpurge() {
    assert_eq!(decode_exact(&[0x00, 0x00, 0x00, 0x03]), Command::ProcPurge);
}

#[test]
fn getkillcnt() {
    let bytes = [
        0x00, 0x00, 0x00, 0x04, // LMK_GETKILLCNT
        0xFF, 0xFF, 0xFC, 0x18, // min -1000
        0x00, 0x00, 0x03, 0xE8, // max 1000
    ];
    assert_eq!(
        decode_exact(&bytes),
        Command::GetKillCnt {
            min_adj: -1000,
            max_adj: 1000
        }
    );
}

#[test]
fn subscribe() {
    let kill = [0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00];
    let stat = [0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x01];
    assert_eq!(
        decode_exact(&kill),
        Command::Subscribe {
            event: proto::event::KILL
        }
    );
    assert_eq!(
        decode_exact(&stat),
        Command::Subscribe {
            event: proto::event::STAT
        }
    );
}

#[test]
fn argless_commands() {
    assert_eq!(
        decode_exact(&[0x00, 0x00, 0x00, 0x07]),
        Command::UpdateProps
    );
    assert_eq!(
        decode_exact(&[0x00, 0x00, 0x00, 0x09]),
        Command::StartMonitoring
    );
    assert_eq!(
        decode_exact(&[0x00, 0x00, 0x00, 0x0A]),
        Command::BootCompleted
    );
}

#[test]
fn procs_prio_four_field_records() {
    #[rustfmt::skip]
    let one = [
        0x00, 0x00, 0x00, 0x0B,                          // LMK_PROCS_PRIO
        0x00, 0x00, 0x04, 0xD2,  0x00, 0x00, 0x27, 0x8B, // pid 1234, uid 10123
        0x00, 0x00, 0x03, 0x84,  0x00, 0x00, 0x00, 0x00, // adj 900, app
    ];
    assert_eq!(one.len(), 20);
    assert_eq!(batch(decode_rt(&one)), [prio(1234, 10123, 900, 0, false)]);

    #[rustfmt::skip]
    let two = [
        0x00, 0x00, 0x00, 0x0B,                          // LMK_PROCS_PRIO
        0x00, 0x00, 0x04, 0xD2,  0x00, 0x00, 0x27, 0x8B, // pid 1234, uid 10123
        0x00, 0x00, 0x03, 0x84,  0x00, 0x00, 0x00, 0x00, // adj 900, app
        0x00, 0x00, 0x01, 0x2C,  0x00, 0x00, 0x03, 0xE8, // pid 300, uid 1000
        0xFF, 0xFF, 0xFC, 0x7C,  0x00, 0x00, 0x00, 0x01, // adj -900, service
    ];
    assert_eq!(two.len(), 36);
    let want = [
        prio(1234, 10123, 900, 0, false),
        prio(300, 1000, -900, 1, false),
    ];
    assert_eq!(batch(decode_rt(&two)), want);

    #[rustfmt::skip]
    let three = [
        0x00, 0x00, 0x00, 0x0B,                          // LMK_PROCS_PRIO
        0x00, 0x00, 0x04, 0xD2,  0x00, 0x00, 0x27, 0x8B, // pid 1234, uid 10123
        0x00, 0x00, 0x03, 0x84,  0x00, 0x00, 0x00, 0x00, // adj 900, app
        0x00, 0x00, 0x01, 0x2C,  0x00, 0x00, 0x03, 0xE8, // pid 300, uid 1000
        0xFF, 0xFF, 0xFC, 0x7C,  0x00, 0x00, 0x00, 0x01, // adj -900, service
        0x7F, 0xFF, 0xFF, 0xFF,  0x00, 0x01, 0x86, 0xA0, // pid i32::MAX, uid 100000
        0x00, 0x00, 0x00, 0x00,  0x00, 0x00, 0x00, 0x00, // adj 0, app
    ];
    assert_eq!(three.len(), 52);
    let want = [
        prio(1234, 10123, 900, 0, false),
        prio(300, 1000, -900, 1, false),
        prio(i32::MAX, 100_000, 0, 0, false),
    ];
    assert_eq!(batch(decode_rt(&three)), want);
}

#[test]
fn procs_prio_five_field_records() {
    #[rustfmt::skip]
    let one = [
        0x00, 0x00, 0x00, 0x0B,                          // LMK_PROCS_PRIO
        0x00, 0x00, 0x04, 0xD2,  0x00, 0x00, 0x27, 0x8B, // pid 1234, uid 10123
        0x00, 0x00, 0x03, 0x84,  0x00, 0x00, 0x00, 0x00, // adj 900, app
        0x00, 0x00, 0x00, 0x01,                          // for_lmkd_only
    ];
    assert_eq!(one.len(), 24);
    assert_eq!(batch(decode_exact(&one)), [prio(1234, 10123, 900, 0, true)]);

    #[rustfmt::skip]
    let two = [
        0x00, 0x00, 0x00, 0x0B,                          // LMK_PROCS_PRIO
        0x00, 0x00, 0x04, 0xD2,  0x00, 0x00, 0x27, 0x8B, // pid 1234, uid 10123
        0x00, 0x00, 0x03, 0x84,  0x00, 0x00, 0x00, 0x00, // adj 900, app
        0x00, 0x00, 0x00, 0x01,                          // for_lmkd_only
        0x00, 0x00, 0x01, 0x2C,  0x00, 0x00, 0x03, 0xE8, // pid 300, uid 1000
        0xFF, 0xFF, 0xFC, 0x7C,  0x00, 0x00, 0x00, 0x01, // adj -900, service
        0x00, 0x00, 0x00, 0x00,                          // write the adj
    ];
    assert_eq!(two.len(), 44);
    let want = [
        prio(1234, 10123, 900, 0, true),
        prio(300, 1000, -900, 1, false),
    ];
    assert_eq!(batch(decode_exact(&two)), want);

    // The 64-byte batch of newer AMS: longer than lmkd's old 52-byte buffer.
    #[rustfmt::skip]
    let three = [
        0x00, 0x00, 0x00, 0x0B,                          // LMK_PROCS_PRIO
        0x00, 0x00, 0x04, 0xD2,  0x00, 0x00, 0x27, 0x8B, // pid 1234, uid 10123
        0x00, 0x00, 0x03, 0x84,  0x00, 0x00, 0x00, 0x00, // adj 900, app
        0x00, 0x00, 0x00, 0x01,                          // for_lmkd_only
        0x00, 0x00, 0x01, 0x2C,  0x00, 0x00, 0x03, 0xE8, // pid 300, uid 1000
        0xFF, 0xFF, 0xFC, 0x7C,  0x00, 0x00, 0x00, 0x01, // adj -900, service
        0x00, 0x00, 0x00, 0x00,                          // write the adj
        0x00, 0x00, 0x10, 0x00,  0x00, 0x00, 0x27, 0x10, // pid 4096, uid 10000
        0x00, 0x00, 0x02, 0x58,  0x00, 0x00, 0x00, 0x00, // adj 600, app
        0x00, 0x00, 0x00, 0x01,                          // for_lmkd_only
    ];
    assert_eq!(three.len(), 64);
    assert_eq!(three.len(), MAX_PACKET);
    let want = [
        prio(1234, 10123, 900, 0, true),
        prio(300, 1000, -900, 1, false),
        prio(4096, 10000, 600, 0, true),
    ];
    assert_eq!(batch(decode_exact(&three)), want);
}

#[test]
fn encode_builds_every_command() {
    let recs = [
        prio(1, 2, 3, 0, false),
        prio(4, 5, 6, 1, true),
        prio(7, 8, -9, 0, true),
    ];
    let levels = [
        Target {
            minfree: 10,
            adj: 0,
        },
        Target {
            minfree: 20,
            adj: 900,
        },
    ];
    let cases: [(Command, &[u8]); 10] = [
        (
            Command::Target(TargetTable::from_slice(&levels).unwrap()),
            &[
                0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0x03, 0x84,
            ],
        ),
        (
            Command::ProcPrio(recs[1]),
            &[
                0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 6, 0, 0, 0, 1, 0, 0, 0, 1,
            ],
        ),
        (
            Command::ProcRemove { pid: -2 },
            &[0, 0, 0, 2, 0xFF, 0xFF, 0xFF, 0xFE],
        ),
        (Command::ProcPurge, &[0, 0, 0, 3]),
        (
            Command::GetKillCnt {
                min_adj: 900,
                max_adj: 906,
            },
            &[0, 0, 0, 4, 0, 0, 3, 0x84, 0, 0, 3, 0x8A],
        ),
        (Command::Subscribe { event: 1 }, &[0, 0, 0, 5, 0, 0, 0, 1]),
        (Command::UpdateProps, &[0, 0, 0, 7]),
        (Command::StartMonitoring, &[0, 0, 0, 9]),
        (Command::BootCompleted, &[0, 0, 0, 10]),
        (
            Command::ProcsPrio(PrioBatch::from_slice(&recs[..2]).unwrap()),
            &[
                0, 0, 0, 11, //
                0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, //
                0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 6, 0, 0, 0, 1, 0, 0, 0, 1,
            ],
        ),
    ];
    for (cmd, bytes) in cases {
        assert_eq!(enc(&cmd), bytes, "{cmd:?}");
        assert_eq!(decode(bytes), Ok(cmd));
    }
    let full = Command::ProcsPrio(PrioBatch::from_slice(&recs).unwrap());
    assert_eq!(enc(&full).len(), 64);
    assert_eq!(decode(&enc(&full)), Ok(full));
    assert_eq!(PrioBatch::from_slice(&[]), None);
    assert_eq!(PrioBatch::from_slice(&[recs[0]; 4]), None);
    assert_eq!(TargetTable::from_slice(&[levels[0]; 7]), None);
}

// ---------------------------------------------------------------------------
// Replies and daemon-to-client messages

#[test]
fn replies() {
    let mut out = [0u8; 8];
    let cases: [(i32, i32, [u8; 8]); 7] = [
        (id::GETKILLCNT, 0, [0, 0, 0, 4, 0, 0, 0, 0]),
        (id::GETKILLCNT, 70_000, [0, 0, 0, 4, 0, 0x01, 0x11, 0x70]),
        (id::UPDATE_PROPS, 0, [0, 0, 0, 7, 0, 0, 0, 0]),
        (id::UPDATE_PROPS, -1, [0, 0, 0, 7, 0xFF, 0xFF, 0xFF, 0xFF]),
        (id::BOOT_COMPLETED, 0, [0, 0, 0, 10, 0, 0, 0, 0]),
        (id::BOOT_COMPLETED, 1, [0, 0, 0, 10, 0, 0, 0, 1]),
        (
            id::BOOT_COMPLETED,
            -1,
            [0, 0, 0, 10, 0xFF, 0xFF, 0xFF, 0xFF],
        ),
    ];
    for (cmd, value, bytes) in cases {
        assert_eq!(encode_reply(cmd, value, &mut out), bytes);
        assert_eq!(decode_reply(cmd, &bytes), Some(value));
        // AMS matches by exact length and first word; so do we.
        assert_eq!(decode_reply(cmd + 1, &bytes), None);
        assert_eq!(decode_reply(cmd, &bytes[..7]), None);
        let mut long = bytes.to_vec();
        long.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(decode_reply(cmd, &long), None);
    }
    assert_eq!(decode_reply(id::GETKILLCNT, &[]), None);
}

#[test]
fn prockill_is_sixteen_bytes() {
    let mut out = [0u8; PROCKILL_LEN];
    let bytes = encode_prockill(1234, 10123, 56789, &mut out).to_vec();
    assert_eq!(
        bytes,
        [
            0x00, 0x00, 0x00, 0x06, // LMK_PROCKILL
            0x00, 0x00, 0x04, 0xD2, // pid 1234
            0x00, 0x00, 0x27, 0x8B, // uid 10123
            0x00, 0x00, 0xDD, 0xD5, // rss 56789 kB
        ]
    );
    let want = ProcKill {
        pid: 1234,
        uid: 10123,
        rss_kb: 56789,
    };
    assert_eq!(decode_prockill(&bytes), Some(want));
    // The pre-2024 12-byte form and anything else is refused, as AMS does.
    assert_eq!(decode_prockill(&bytes[..12]), None);
    let mut long = bytes.clone();
    long.extend_from_slice(&[0; 4]);
    assert_eq!(decode_prockill(&long), None);
    let mut other = bytes.clone();
    other[3] = 0x08;
    assert_eq!(decode_prockill(&other), None);
}

/// Every field distinct, so a shifted offset cannot go unnoticed.
fn distinct_stat(name: &[u8]) -> KillStat {
    // KillStat's name storage is private: start from the default.
    let mut s = KillStat::default();
    s.pgfault = 0x0102_0304_0506_0708;
    s.pgmajfault = 0x1112_1314_1516_1718;
    s.rss_bytes = 0x2122_2324_2526_2728;
    s.cache_bytes = 0x3132_3334_3536_3738;
    s.swap_bytes = 0x4142_4344_4546_4748;
    s.start_time_ns = 0x5152_5354_5556_5758;
    s.uid = 0x6162_6364;
    s.oom_score_adj = 0x6566_6768;
    s.min_oom_score = 0x696A_6B6C;
    s.free_mem_kb = 0x6D6E_6F70;
    s.free_swap_kb = 0x7172_7374;
    s.reason = 0x7576_7778;
    s.thrashing = 0x797A_7B7C;
    s.max_thrashing = 0x7D7E_7F70;
    s.set_name(name);
    s
}

#[test]
fn kill_stat_layout() {
    let s = distinct_stat(b"app");
    let mut out = [0u8; STAT_MAX_LEN];
    let n = encode_kill_stat(&s, &mut out);
    #[rustfmt::skip]
    let want: [u8; 90] = [
        0x00, 0x00, 0x00, 0x08,                          //  0 cmd
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, //  4 pgfault
        0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, // 12 pgmajfault
        0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, // 20 rss bytes
        0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, // 28 cache bytes
        0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, // 36 swap bytes
        0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, // 44 start time
        0x61, 0x62, 0x63, 0x64,                          // 52 uid
        0x65, 0x66, 0x67, 0x68,                          // 56 oom_score_adj
        0x69, 0x6A, 0x6B, 0x6C,                          // 60 min_oom_score
        0x6D, 0x6E, 0x6F, 0x70,                          // 64 free_mem_kb
        0x71, 0x72, 0x73, 0x74,                          // 68 free_swap_kb
        0x75, 0x76, 0x77, 0x78,                          // 72 reason
        0x79, 0x7A, 0x7B, 0x7C,                          // 76 thrashing
        0x7D, 0x7E, 0x7F, 0x70,                          // 80 max thrashing
        0x00, 0x03,                                     // 84 name length
        b'a', b'p', b'p', 0x00,                         // 86 name + NUL
    ];
    assert_eq!(n, 87 + 3);
    assert_eq!(&out[..n], want);
    // AMS requires at least 80 bytes.
    assert!(n >= 80);
    assert_eq!(decode_kill_stat(&out[..n]), Some(s));
}

#[test]
fn kill_stat_defaults_are_minus_one() {
    let s = KillStat::default();
    let mut out = [0xAAu8; STAT_MAX_LEN];
    let n = encode_kill_stat(&s, &mut out);
    assert_eq!(n, 87);
    assert_eq!(&out[..4], [0, 0, 0, 8]);
    // Memory figures (pgfault .. start time) unknown: all ones.
    assert!(
        out[4..52].iter().all(|&b| b == 0xFF),
        "{:02x?}",
        &out[4..52]
    );
    assert_eq!(&out[64..72], [0xFF; 8], "free mem and swap unknown");
    assert_eq!(&out[84..87], [0, 0, 0], "empty name and its NUL");
    assert_eq!(decode_kill_stat(&out[..n]), Some(s));
}

#[test]
fn kill_stat_negative_values() {
    let mut s = distinct_stat(b"");
    s.oom_score_adj = -900;
    s.min_oom_score = -1000;
    s.rss_bytes = i64::MIN;
    let mut out = [0u8; STAT_MAX_LEN];
    let n = encode_kill_stat(&s, &mut out);
    assert_eq!(&out[56..60], [0xFF, 0xFF, 0xFC, 0x7C]);
    assert_eq!(&out[60..64], [0xFF, 0xFF, 0xFC, 0x18]);
    assert_eq!(&out[20..28], [0x80, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(decode_kill_stat(&out[..n]), Some(s));
}

#[test]
fn kill_stat_name_lengths_and_truncation() {
    let mut out = [0u8; STAT_MAX_LEN];
    // (name, bytes kept)
    let a = |n: usize| "a".repeat(n);
    let cases: Vec<(String, usize)> = vec![
        (String::new(), 0),
        ("com.android.systemui".into(), 20),
        (a(126), 126),
        (a(127), 127),
        (a(128), 127),
        (a(400), 127),
        // A two-byte character ending exactly at 127 is kept ...
        (a(125) + "é", 127),
        // ... one straddling the limit is dropped whole.
        (a(126) + "é", 126),
        (a(125) + "€", 125),
        (a(126) + "€", 126),
        ("é".repeat(100), 126),
        ("€".repeat(50), 126),
    ];
    for (name, kept) in cases {
        let s = distinct_stat(name.as_bytes());
        assert_eq!(s.name(), &name.as_bytes()[..kept], "{name}");
        let n = encode_kill_stat(&s, &mut out);
        assert_eq!(n, 87 + kept, "{name}");
        assert_eq!(u16::from_be_bytes([out[84], out[85]]) as usize, kept);
        assert_eq!(&out[86..86 + kept], &name.as_bytes()[..kept]);
        assert_eq!(out[86 + kept], 0, "NUL after the name");
        assert!(std::str::from_utf8(&out[86..86 + kept]).is_ok(), "{name}");
        assert_eq!(decode_kill_stat(&out[..n]), Some(s));
    }
    assert_eq!(STAT_MAX_LEN, 87 + STAT_NAME_MAX);
}

/// Java's readUTF (modified UTF-8) rejects 4-byte sequences and invalid
/// bytes, so those are replaced by '?' rather than making AMS throw.
#[test]
fn kill_stat_name_is_modified_utf8_safe() {
    let a = |n: usize| "a".repeat(n);
    let cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
        ((a(3) + "😀" + "b").into_bytes(), b"aaa?b".to_vec()),
        ((a(126) + "😀").into_bytes(), (a(126) + "?").into_bytes()),
        ((a(127) + "😀").into_bytes(), a(127).into_bytes()),
        (b"x\xffy\xc3".to_vec(), b"x?y?".to_vec()),
        (b"\xed\xa0\x80z".to_vec(), b"???z".to_vec()),
        ("é€".as_bytes().to_vec(), "é€".as_bytes().to_vec()),
    ];
    for (name, want) in cases {
        let s = distinct_stat(&name);
        assert_eq!(s.name(), &want[..], "{name:?}");
    }
}

#[test]
fn kill_stat_decode_refuses_garbage() {
    let s = distinct_stat(b"name");
    let mut out = [0u8; STAT_MAX_LEN];
    let n = encode_kill_stat(&s, &mut out);
    let good = out[..n].to_vec();
    assert!(decode_kill_stat(&good).is_some());
    assert_eq!(decode_kill_stat(&[]), None);
    assert_eq!(decode_kill_stat(&good[..85]), None);
    // Name length pointing past the end.
    let mut past = good.clone();
    past[85] = 40;
    assert_eq!(decode_kill_stat(&past), None);
    // Name length above the protocol's maximum.
    let mut huge = vec![0u8; 86 + 300];
    huge[..86].copy_from_slice(&good[..86]);
    huge[84..86].copy_from_slice(&200u16.to_be_bytes());
    assert_eq!(decode_kill_stat(&huge), None);
    // Another message id.
    let mut other = good.clone();
    other[3] = 6;
    assert_eq!(decode_kill_stat(&other), None);
}

// ---------------------------------------------------------------------------
// Malformed input

#[test]
fn short_packets() {
    for len in 0..4 {
        let buf = [0u8; 3];
        assert_eq!(decode(&buf[..len]), Err(DecodeError::Short { len }));
        assert_eq!(peek_id(&buf[..len]), None);
    }
}

#[test]
fn too_long_packets() {
    // A 5-field batch of 3 plus one word: 68 bytes.
    let mut p = packet(id::PROCS_PRIO, 15);
    assert_eq!(decode(&p).map(|c| c.id()), Ok(id::PROCS_PRIO));
    p.extend_from_slice(&[0, 0, 0, 1]);
    assert_eq!(p.len(), 68);
    assert_eq!(decode(&p), Err(DecodeError::TooLong { len: 68 }));
    // 16 PROCS_PRIO args do not fit a datagram we accept at all.
    assert_eq!(
        decode(&packet(id::PROCS_PRIO, 16)),
        Err(DecodeError::TooLong { len: 68 })
    );
    for len in [65, 66, 67, 128, 4096] {
        assert_eq!(decode(&vec![0u8; len]), Err(DecodeError::TooLong { len }));
    }
}

#[test]
fn unaligned_packets() {
    for len in [5, 6, 7, 9, 10, 11, 21, 63] {
        let mut p = vec![0u8; len];
        p[3] = id::PROCPRIO as u8;
        assert_eq!(decode(&p), Err(DecodeError::Unaligned { len }));
        assert_eq!(peek_id(&p), Some(id::PROCPRIO));
    }
}

#[test]
fn bad_argument_counts() {
    let cases: &[(i32, &[usize])] = &[
        (id::TARGET, &[0, 1, 3, 5, 11, 13, 14]),
        (id::PROCPRIO, &[0, 1, 2, 6, 7, 15]),
        (id::PROCREMOVE, &[0, 2, 3]),
        (id::PROCPURGE, &[1, 2]),
        (id::GETKILLCNT, &[0, 1, 3]),
        (id::SUBSCRIBE, &[0, 2]),
        (id::UPDATE_PROPS, &[1]),
        (id::START_MONITORING, &[1]),
        (id::BOOT_COMPLETED, &[1, 2]),
        (id::PROCS_PRIO, &[0, 1, 2, 3, 6, 7, 9, 11, 13, 14]),
    ];
    for &(cmd, counts) in cases {
        for &nargs in counts {
            let p = packet(cmd, nargs);
            let err = decode(&p).unwrap_err();
            assert_eq!(
                err,
                DecodeError::BadArgCount { cmd, nargs },
                "cmd {cmd} nargs {nargs}"
            );
            // The server answers commands with replies even when malformed.
            assert_eq!(err.command(), Some(cmd));
            assert_eq!(peek_id(&p), Some(cmd));
        }
    }
}

#[test]
fn unknown_ids() {
    for cmd in [
        id::PROCKILL,
        id::STAT_KILL_OCCURRED,
        12,
        13,
        -1,
        0x7fff_ffff,
        i32::MIN,
    ] {
        for nargs in [0, 1, 2, 15] {
            let p = packet(cmd, nargs);
            let err = decode(&p).unwrap_err();
            assert_eq!(err, DecodeError::UnknownCommand { cmd });
            assert_eq!(err.command(), Some(cmd));
            assert!(!has_reply(cmd));
        }
    }
    let bytes = [0x7F, 0xFF, 0xFF, 0xFF];
    assert_eq!(
        decode(&bytes),
        Err(DecodeError::UnknownCommand { cmd: 0x7fff_ffff })
    );
    let bytes = [0xFF, 0xFF, 0xFF, 0xFF];
    assert_eq!(decode(&bytes), Err(DecodeError::UnknownCommand { cmd: -1 }));
}

#[test]
fn error_commands_and_reply_ids() {
    assert_eq!(DecodeError::Short { len: 2 }.command(), None);
    assert_eq!(DecodeError::TooLong { len: 68 }.command(), None);
    assert_eq!(DecodeError::Unaligned { len: 6 }.command(), None);
    let with_reply: Vec<i32> = (-2..=13).filter(|&c| has_reply(c)).collect();
    assert_eq!(
        with_reply,
        [id::GETKILLCNT, id::UPDATE_PROPS, id::BOOT_COMPLETED]
    );
    // Every error has a message naming what went wrong.
    for e in [
        DecodeError::Short { len: 2 },
        DecodeError::TooLong { len: 68 },
        DecodeError::Unaligned { len: 6 },
        DecodeError::BadArgCount { cmd: 1, nargs: 2 },
        DecodeError::UnknownCommand { cmd: 12 },
    ] {
        assert!(!e.to_string().is_empty());
    }
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
}

/// Every length 0..=72 with random contents, and with word 0 forced to each
/// known id, must decode to a value consistent with the length rules, never
/// panic, and re-encode to something that decodes the same.
#[test]
fn exhaustive_lengths_never_panic() {
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    let mut buf = [0u8; 72];
    let mut ok = 0;
    for len in 0..=72usize {
        for round in 0..400i32 {
            for b in buf.iter_mut() {
                *b = rng.next() as u8;
            }
            if len >= 4 && round % 2 == 0 {
                let cmd = round / 2 % 15 - 1; // -1 ..= 13
                buf[..4].copy_from_slice(&cmd.to_be_bytes());
            }
            let p = &buf[..len];
            match decode(p) {
                Ok(cmd) => {
                    assert!((4..=MAX_PACKET).contains(&len) && len % 4 == 0);
                    assert_eq!(peek_id(p), Some(cmd.id()));
                    assert_eq!(decode(&enc(&cmd)), Ok(cmd));
                    ok += 1;
                }
                Err(DecodeError::TooLong { len: l }) => assert!(l == len && len > MAX_PACKET),
                Err(DecodeError::Short { len: l }) => assert!(l == len && len < 4),
                Err(DecodeError::Unaligned { len: l }) => assert!(l == len && len % 4 != 0),
                Err(DecodeError::BadArgCount { cmd, nargs }) => {
                    assert_eq!(nargs, len / 4 - 1);
                    assert_eq!(peek_id(p), Some(cmd));
                }
                Err(DecodeError::UnknownCommand { cmd }) => assert_eq!(peek_id(p), Some(cmd)),
            }
            let _ = decode_prockill(p);
            let _ = decode_kill_stat(p);
            let _ = decode_reply(id::GETKILLCNT, p);
        }
    }
    assert!(ok > 200, "the forced ids should decode often: {ok}");
}

#[test]
fn kill_stat_decode_never_panics() {
    let mut rng = XorShift(7);
    let mut buf = [0u8; STAT_MAX_LEN + 8];
    for len in 0..=buf.len() {
        for round in 0..50 {
            for b in buf.iter_mut() {
                *b = rng.next() as u8;
            }
            if round % 2 == 0 && len >= 86 {
                buf[..4].copy_from_slice(&8i32.to_be_bytes());
                let n = (rng.next() % 160) as u16;
                buf[84..86].copy_from_slice(&n.to_be_bytes());
            }
            if let Some(s) = decode_kill_stat(&buf[..len]) {
                assert!(s.name().len() <= STAT_NAME_MAX);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// No allocation on the hot path

#[test]
fn codec_does_not_allocate() {
    // The counter itself works: a zero below means something.
    assert!(allocations(|| std::hint::black_box(vec![1u8; 8])).0 >= 1);
    let p64 = packet(id::PROCS_PRIO, 15);
    let target = packet(id::TARGET, 12);
    let bad = packet(id::PROCPRIO, 2);
    let long_name = "x".repeat(300);
    let (n, ()) = allocations(|| {
        for _ in 0..1000 {
            let c = decode(&p64).unwrap();
            let mut out = [0u8; MAX_PACKET];
            encode(&c, &mut out);
            let c = decode(&target).unwrap();
            encode(&c, &mut out);
            assert!(decode(&bad).is_err());
            let mut r = [0u8; 8];
            encode_reply(id::GETKILLCNT, 1, &mut r);
            let mut k = [0u8; PROCKILL_LEN];
            encode_prockill(1, 2, 3, &mut k);
            let mut s = KillStat::default();
            s.set_name(long_name.as_bytes());
            let mut st = [0u8; STAT_MAX_LEN];
            encode_kill_stat(&s, &mut st);
        }
    });
    assert_eq!(n, 0, "codec allocated {n} times");
}

#[test]
fn process_table_does_not_allocate_after_new() {
    use lmkd::table::{Proc, ProcTable, NO_OWNER};
    let mut t = ProcTable::new(1024).unwrap();
    let (n, sum) = allocations(|| {
        let mut sum = 0i64;
        for round in 0..20 {
            for pid in 1..=1024 {
                let adj = ((pid * 7 + round) % 2001 - 1000) as i16;
                let p = Proc {
                    pid,
                    uid: 10_000,
                    adj,
                    ptype: 0,
                    owner: round,
                };
                t.insert(p).unwrap();
            }
            assert!(t
                .insert(Proc {
                    pid: 5000,
                    ..*t.get(1).unwrap()
                })
                .is_err());
            for pid in (1..=1024).step_by(3) {
                t.set_adj(pid, 900);
                t.set_uid(pid, 1);
                t.set_owner(pid, 2);
            }
            sum += t.iter_adj(900).map(|p| p.pid as i64).sum::<i64>();
            sum += t.tail(900).map_or(0, |p| p.pid as i64);
            sum += t.iter().count() as i64;
            t.disown(2);
            t.remove_where(|p| p.owner == NO_OWNER, |p| sum += p.pid as i64);
            for pid in 1..=1024 {
                t.remove(pid);
            }
            assert!(t.is_empty());
        }
        sum
    });
    assert!(sum > 0);
    assert_eq!(n, 0, "process table allocated {n} times");
}
