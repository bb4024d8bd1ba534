//! Snapshot parsers on the recorded and hand-made /proc fixtures
//! (tests/fixtures/proc/README.md), malformed input, random bytes, and the
//! `Reader` pointed at a fixture directory.

mod common;

use common::rng::Rng;

use lmkd::snapshot::{
    parse_meminfo, parse_psi, parse_vmstat, parse_zoneinfo, parse_zoneinfo_with_page_size,
    Degradation, FileKind, Known, MemInfo, ParseError, ParseErrorKind, PsiAvg, ReadErrorKind,
    Reader, VmStat, Watermarks,
};
use std::path::{Path, PathBuf};

const DIRS: [&str; 8] = [
    "host",
    "vm",
    "small",
    "multinode",
    "noswap",
    "cma",
    "oldkernel",
    "malformed",
];

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/proc")
        .join(name)
}

/// `zoneinfo` with `pages` added to every zone's min, low and high, as the
/// kernel's `watermark_boost` does.
fn boosted(zoneinfo: &[u8], pages: u64) -> Vec<u8> {
    let text = String::from_utf8(zoneinfo.to_vec()).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some(k @ ("min" | "low" | "high")), Some(v), None) => {
                let v: u64 = v.parse().unwrap();
                out.push_str(&format!("        {k:<8} {}\n", v + pages));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out.into_bytes()
}

fn fixture(d: &str, file: &str) -> Vec<u8> {
    let p = dir(d).join(file);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn meminfo(d: &str) -> Result<MemInfo, ParseError> {
    let mut m = MemInfo::default();
    parse_meminfo(&fixture(d, "meminfo"), &mut m).map(|_| m)
}
fn vmstat(d: &str) -> Result<VmStat, ParseError> {
    let mut v = VmStat::default();
    parse_vmstat(&fixture(d, "vmstat"), &mut v).map(|_| v)
}
fn zoneinfo(d: &str) -> Result<Watermarks, ParseError> {
    let mut w = Watermarks::default();
    parse_zoneinfo(&fixture(d, "zoneinfo"), &mut w).map(|_| w)
}
fn psi(d: &str) -> Result<PsiAvg, ParseError> {
    let mut p = PsiAvg::default();
    parse_psi(&fixture(d, "pressure_memory"), &mut p).map(|_| p)
}

#[test]
fn every_parser_on_every_good_fixture() {
    for d in DIRS.iter().filter(|d| **d != "malformed") {
        let m = meminfo(d).unwrap_or_else(|e| panic!("{d}: {e}"));
        let v = vmstat(d).unwrap_or_else(|e| panic!("{d}: {e}"));
        let w = zoneinfo(d).unwrap_or_else(|e| panic!("{d}: {e}"));
        psi(d).unwrap_or_else(|e| panic!("{d}: {e}"));
        assert!(m.mem_total_kb > 0 && m.free_kb > 0, "{d}");
        assert!(v.file_lru_pages() > 0, "{d}");
        assert!(w.min_kb < w.low_kb && w.low_kb < w.high_kb, "{d}: {w:?}");
    }
}

#[test]
fn host_values() {
    let m = meminfo("host").unwrap();
    assert_eq!(m.mem_total_kb, 24684096);
    assert_eq!(m.free_kb, 23322756);
    assert_eq!(m.cached_kb, 1125352);
    assert_eq!(m.buffers_kb, 8836);
    assert_eq!(m.inactive_file_kb, 651100);
    assert_eq!(m.shmem_kb, 8788);
    assert_eq!((m.swap_total_kb, m.swap_free_kb, m.cma_free_kb), (0, 0, 0));
    assert_eq!(m.file_pages_kb(), 1125352 + 8836);
    assert_eq!(m.easy_available_kb(), 23322756 + 651100);

    let v = vmstat("host").unwrap();
    assert_eq!(v.nr_free_pages, 1485012);
    assert_eq!(v.nr_inactive_file, 162775);
    assert_eq!(v.nr_active_file, 118574);
    assert_eq!(v.workingset_refault_file, 182727);

    // DMA (35/43/51 + 7115), DMA32 (7154/8942/10730 + 4096), Normal (+0);
    // Movable and Device are unpopulated and skipped despite min 32.
    let w = zoneinfo("host").unwrap();
    assert_eq!(
        w,
        Watermarks {
            min_kb: 28106 * 4,
            low_kb: 32328 * 4,
            high_kb: 36550 * 4
        }
    );

    assert_eq!(psi("host").unwrap(), PsiAvg::default());
}

/// Recorded in the qemu guest (Debian 6.1 kernel, 512 MiB, zram swap)
/// during the ladder scenario, when MemFree first fell below 20 MB.
#[test]
fn recorded_vm_values() {
    let m = meminfo("vm").unwrap();
    assert_eq!((m.mem_total_kb, m.free_kb), (466136, 24412));
    assert_eq!(
        (m.swap_total_kb, m.swap_free_kb, m.swap_cached_kb),
        (262140, 207868, 36)
    );
    assert_eq!((m.inactive_anon_kb, m.inactive_file_kb), (369444, 4));
    let v = vmstat("vm").unwrap();
    assert_eq!((v.pgscan_direct, v.pgscan_kswapd), (114855, 6502));
    assert_eq!((v.nr_inactive_file, v.workingset_refault_file), (1, 0));
    // DMA (protection 428) and DMA32 populated; Normal/Movable/Device empty.
    let w = zoneinfo("vm").unwrap();
    assert_eq!(
        w,
        Watermarks {
            min_kb: (428 + 22 + 1674) * 4,
            low_kb: (428 + 27 + 1836) * 4,
            high_kb: (428 + 32 + 1998) * 4
        }
    );
    let p = psi("vm").unwrap();
    assert_eq!((p.some_avg10, p.full_avg10), (163, 163));
    assert_eq!((p.some_total_us, p.full_total_us), (1762458, 1321933));
}

#[test]
fn small_vm_values() {
    let m = meminfo("small").unwrap();
    assert_eq!(m.mem_total_kb, 492000);
    assert_eq!(m.free_kb, 12000);
    assert_eq!(
        (m.swap_total_kb, m.swap_free_kb, m.swap_cached_kb),
        (524284, 40000, 8000)
    );
    assert_eq!(m.file_pages_kb(), 60000 + 8000 + 1000);
    assert_eq!(m.anon_kb(), 310000);
    let v = vmstat("small").unwrap();
    assert_eq!(v.pgscan_direct, 35000);
    assert_eq!(v.pgscan_kswapd, 1500000);
    assert_eq!(v.pgrefill, 420000);
    assert_eq!(v.pgscan_direct_throttle, 12);
    assert_eq!(v.workingset_refault_file, 900000);
    // The per-node "workingset_refault_file" inside zoneinfo is not vmstat's.
    let w = zoneinfo("small").unwrap();
    assert_eq!(
        w,
        Watermarks {
            min_kb: 4628,
            low_kb: 5348,
            high_kb: 6068
        }
    );
    let p = psi("small").unwrap();
    assert_eq!(
        (p.some_avg10, p.some_avg60, p.some_avg300),
        (2345, 1012, 301)
    );
    assert_eq!((p.full_avg10, p.full_avg60, p.full_avg300), (567, 250, 75));
    assert_eq!((p.some_total_us, p.full_total_us), (123456789, 23456789));
}

#[test]
fn multinode_sums_all_nodes() {
    let w = zoneinfo("multinode").unwrap();
    assert_eq!(
        w,
        Watermarks {
            min_kb: 152424,
            low_kb: 179312,
            high_kb: 206200
        }
    );
    // With 16 KiB pages every sum is four times larger.
    let mut w16 = Watermarks::default();
    parse_zoneinfo_with_page_size(&fixture("multinode", "zoneinfo"), 16384, &mut w16).unwrap();
    assert_eq!(w16.high_kb, 206200 * 4);
}

#[test]
fn noswap_cma_oldkernel() {
    let m = meminfo("noswap").unwrap();
    assert_eq!((m.swap_total_kb, m.swap_free_kb, m.free_kb), (0, 0, 200000));
    let m = meminfo("cma").unwrap();
    assert_eq!(
        (m.cma_free_kb, m.swap_total_kb, m.free_kb),
        (90000, 2097148, 150000)
    );
    let v = vmstat("oldkernel").unwrap();
    assert_eq!(v.workingset_refault_file, 4242);
}

#[test]
fn optional_fields_may_be_absent() {
    // A kernel built without swap or CMA: those lines do not appear at all.
    let text = String::from_utf8(fixture("host", "meminfo")).unwrap();
    let stripped: String = text
        .lines()
        .filter(|l| !l.starts_with("Swap") && !l.starts_with("Cma"))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut m = MemInfo::default();
    parse_meminfo(stripped.as_bytes(), &mut m).unwrap();
    assert_eq!(
        (
            m.swap_total_kb,
            m.swap_free_kb,
            m.swap_cached_kb,
            m.cma_free_kb
        ),
        (0, 0, 0, 0)
    );
    // Both refault names present: the per-file one wins.
    let mut v = VmStat::default();
    parse_vmstat(
        b"nr_free_pages 1\nnr_inactive_file 2\nnr_active_file 3\npgscan_kswapd 4\n\
          pgscan_direct 5\nworkingset_refault 6\nworkingset_refault_file 7\n",
        &mut v,
    )
    .unwrap();
    assert_eq!(
        (
            v.workingset_refault_file,
            v.pgrefill,
            v.pgscan_direct_throttle
        ),
        (7, 0, 0)
    );
}

#[test]
fn malformed_fixtures_name_the_problem() {
    assert_eq!(
        meminfo("malformed"),
        Err(ParseError::missing(FileKind::MemInfo, "MemFree"))
    );
    let e = vmstat("malformed").unwrap_err();
    assert_eq!(e.file, FileKind::VmStat);
    assert_eq!(e.field(), Some("pgscan_direct"));
    assert!(matches!(e.kind, ParseErrorKind::BadValue { .. }));
    // Cut inside DMA32: that zone never states whether it is populated.
    assert_eq!(
        zoneinfo("malformed"),
        Err(ParseError::missing(FileKind::ZoneInfo, "present"))
    );
    assert_eq!(
        psi("malformed"),
        Err(ParseError::bad_value(FileKind::Psi, "some avg60", 1))
    );
    let shown = e.to_string();
    assert!(
        shown.contains("vmstat") && shown.contains("pgscan_direct"),
        "{shown}"
    );
}

#[test]
fn hand_made_defects() {
    let mut m = MemInfo::default();
    let e = parse_meminfo(b"MemTotal: 100 kB\nMemFree:\n", &mut m).unwrap_err();
    assert_eq!(e, ParseError::bad_value(FileKind::MemInfo, "MemFree", 2));
    let e = parse_meminfo(b"MemTotal: 100 kB\nMemFree: 5 MB\n", &mut m).unwrap_err();
    assert_eq!(e, ParseError::bad_value(FileKind::MemInfo, "MemFree", 2));
    let e = parse_meminfo(b"MemTotal: 99999999999999999999999 kB\n", &mut m).unwrap_err();
    assert_eq!(e.field(), Some("MemTotal"));
    let e = parse_meminfo(b"MemTotal: 1 kB\nMemFr", &mut m).unwrap_err();
    assert_eq!(e, ParseError::bad_line(FileKind::MemInfo, 2));
    let e = parse_meminfo(b"", &mut m).unwrap_err();
    assert_eq!(e, ParseError::missing(FileKind::MemInfo, "MemTotal"));

    let mut v = VmStat::default();
    let e = parse_vmstat(b"nr_free_pages 1\nnr_inactive_file 2\n", &mut v).unwrap_err();
    assert_eq!(e, ParseError::missing(FileKind::VmStat, "nr_active_file"));
    let e = parse_vmstat(
        b"nr_free_pages 1\nnr_inactive_file 2\nnr_active_file 3\npgscan_kswapd 4\npgscan_direct 5\n",
        &mut v,
    )
    .unwrap_err();
    assert_eq!(
        e,
        ParseError::missing(FileKind::VmStat, "workingset_refault_file")
    );
    let e = parse_vmstat(b"nr_free_pages -1\n", &mut v).unwrap_err();
    assert_eq!(
        e,
        ParseError::bad_value(FileKind::VmStat, "nr_free_pages", 1)
    );

    let mut w = Watermarks::default();
    let e = parse_zoneinfo(b"", &mut w).unwrap_err();
    assert_eq!(e, ParseError::missing(FileKind::ZoneInfo, "populated zone"));
    let e = parse_zoneinfo(
        b"Node 0, zone DMA\n min 1\n low 2\n high 3\n present 4\n protection: (0, x)\n",
        &mut w,
    )
    .unwrap_err();
    assert_eq!(e.field(), Some("protection"));
    let e = parse_zoneinfo(
        b"Node 0, zone DMA\n min 1\n present 4\n managed 4\n",
        &mut w,
    )
    .unwrap_err();
    assert_eq!(e, ParseError::missing(FileKind::ZoneInfo, "low"));
    // Failed parses leave the previous watermarks alone.
    assert_eq!(w, Watermarks::default());

    let mut p = PsiAvg::default();
    let e = parse_psi(b"some avg10=1.00 avg60=1.00 avg300=1.00 total=5\n", &mut p).unwrap_err();
    assert_eq!(e, ParseError::missing(FileKind::Psi, "full"));
    let e = parse_psi(b"some avg10=1.00 avg60=1.00 total=5\n", &mut p).unwrap_err();
    assert_eq!(e, ParseError::missing(FileKind::Psi, "some avg300"));
    let e = parse_psi(b"weird line\n", &mut p).unwrap_err();
    assert_eq!(e, ParseError::bad_line(FileKind::Psi, 1));
    parse_psi(
        b"some avg10=100.00 avg60=0.5 avg300=7 total=1\nfull avg10=99.999 avg60=0 avg300=0 total=2",
        &mut p,
    )
    .unwrap();
    assert_eq!(
        (p.some_avg10, p.some_avg60, p.some_avg300, p.full_avg10),
        (10000, 50, 700, 9999)
    );
}

fn run_all(buf: &[u8]) {
    let _ = parse_meminfo(buf, &mut MemInfo::default());
    let _ = parse_vmstat(buf, &mut VmStat::default());
    let _ = parse_zoneinfo(buf, &mut Watermarks::default());
    let _ = parse_zoneinfo_with_page_size(buf, 0, &mut Watermarks::default());
    let _ = parse_psi(buf, &mut PsiAvg::default());
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // Pure noise, and noise drawn from the characters these files use.
    const ALPHABET: &[u8] =
        b"0123456789 \n:.=,()kBminlowhighpresentmanagedprotectionsomefullavg10Node";
    for round in 0..3000 {
        let len = (rng.next() % 600) as usize;
        let buf: Vec<u8> = (0..len)
            .map(|_| {
                let r = rng.next();
                if round % 2 == 0 {
                    r as u8
                } else {
                    ALPHABET[(r % ALPHABET.len() as u64) as usize]
                }
            })
            .collect();
        run_all(&buf);
    }
    // Every fixture with random bytes flipped, and every prefix of one.
    for d in DIRS {
        for f in ["meminfo", "vmstat", "zoneinfo", "pressure_memory"] {
            let orig = fixture(d, f);
            for _ in 0..100 {
                let mut b = orig.clone();
                for _ in 0..8 {
                    let i = (rng.next() % b.len() as u64) as usize;
                    b[i] = rng.next() as u8;
                }
                run_all(&b);
            }
            for cut in (0..orig.len()).step_by(7) {
                run_all(&orig[..cut]);
            }
        }
    }
}

#[test]
fn reader_on_fixture_dir() {
    let d = dir("small");
    let mut r = Reader::open(&d, &d.join("pressure_memory")).unwrap();
    let s = *r.read(1000).unwrap();
    assert_eq!(s.time_ms, 1000);
    assert_eq!(s.mem.free_kb, 12000);
    assert_eq!(s.vm.pgscan_direct, 35000);
    assert_eq!(s.psi.full_avg10, 567);
    if lmkd::snapshot::page_size() == 4096 {
        assert_eq!(
            s.wm,
            Watermarks {
                min_kb: 4628,
                low_kb: 5348,
                high_kb: 6068
            }
        );
    }
    // Re-reads give the same numbers; the last snapshot stays available.
    let s2 = *r.read(2000).unwrap();
    assert_eq!(s2.mem, s.mem);
    assert_eq!(r.snapshot().time_ms, 2000);
    assert_eq!(r.read(3000).unwrap().wm, s.wm);
}

#[test]
fn reader_holds_boosted_watermarks_and_errors() {
    let tmp = std::env::temp_dir().join(format!("lmkd-pol-reader-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    for f in ["meminfo", "vmstat", "zoneinfo", "pressure_memory"] {
        std::fs::write(tmp.join(f), fixture("host", f)).unwrap();
    }
    let psi_path = tmp.join("pressure_memory");
    let mut r = Reader::open(&tmp, &psi_path).unwrap();
    let wm0 = r.read(0).unwrap().wm;
    // The watermarks in force after a refresh (the daemon refreshes after
    // each evaluation, off the path from event to signal).
    const HOLD_MS: u64 = 60_000;
    let wm_at = |r: &mut Reader, t: u64| {
        r.refresh_watermarks(t, HOLD_MS);
        r.read(t).unwrap().wm
    };

    // A higher (boosted) reading is in force at once; a lower one only
    // once the higher has not been seen for the hold.
    let host = fixture("host", "zoneinfo");
    std::fs::write(tmp.join("zoneinfo"), boosted(&host, 512)).unwrap();
    assert_eq!(
        r.read(500).unwrap().wm,
        wm0,
        "a snapshot read zoneinfo itself: it belongs after the evaluation"
    );
    let up = wm_at(&mut r, 1000);
    let ps = lmkd::snapshot::page_size() / 1024;
    let mut want = Watermarks::default();
    parse_zoneinfo_with_page_size(&boosted(&host, 512), ps * 1024, &mut want).unwrap();
    assert_eq!(up, want);
    assert!(up.min_kb > wm0.min_kb && up.high_kb > wm0.high_kb);
    std::fs::write(tmp.join("zoneinfo"), &host).unwrap();
    assert_eq!(wm_at(&mut r, 2000), up, "the boost was dropped at once");
    assert_eq!(wm_at(&mut r, 1000 + HOLD_MS), up);
    assert_eq!(wm_at(&mut r, 1001 + HOLD_MS), wm0);
    // A boost seen again restarts the hold.
    std::fs::write(tmp.join("zoneinfo"), boosted(&host, 512)).unwrap();
    assert_eq!(wm_at(&mut r, 70_000), up);
    std::fs::write(tmp.join("zoneinfo"), &host).unwrap();
    assert_eq!(wm_at(&mut r, 129_000), up);
    assert_eq!(wm_at(&mut r, 130_001), wm0);
    // A shorter hold (`watermark_hold_ms`) lets the boost go sooner; 0
    // takes each reading as it comes.
    std::fs::write(tmp.join("zoneinfo"), boosted(&host, 512)).unwrap();
    r.refresh_watermarks(131_000, 1000);
    std::fs::write(tmp.join("zoneinfo"), &host).unwrap();
    r.refresh_watermarks(132_000, 1000);
    assert_eq!(r.read(132_000).unwrap().wm, up);
    r.refresh_watermarks(132_001, 1000);
    assert_eq!(r.read(132_001).unwrap().wm, wm0);
    std::fs::write(tmp.join("zoneinfo"), boosted(&host, 512)).unwrap();
    r.refresh_watermarks(133_000, 0);
    std::fs::write(tmp.join("zoneinfo"), &host).unwrap();
    r.refresh_watermarks(133_001, 0);
    assert_eq!(r.read(133_001).unwrap().wm, wm0);
    // Expressed in kB of the page size, not pages.
    std::fs::write(tmp.join("zoneinfo"), fixture("small", "zoneinfo")).unwrap();
    assert_eq!(wm_at(&mut r, 200_000).low_kb, 1337 * ps);

    // A parse error names the file and keeps the last snapshot.
    std::fs::write(tmp.join("meminfo"), fixture("malformed", "meminfo")).unwrap();
    let e = r.read(210_000).unwrap_err();
    assert_eq!(e.file, FileKind::MemInfo);
    assert_eq!(
        e.kind,
        ReadErrorKind::Parse(ParseError::missing(FileKind::MemInfo, "MemFree"))
    );
    assert!(e.to_string().contains("MemFree"), "{e}");
    assert_eq!(r.snapshot().time_ms, 200_000);

    // A file that outgrew its start-up buffer: its whole lines that fit are
    // used, and the growth is told once.
    let mut big = fixture("host", "vmstat");
    let pad = big.clone();
    for _ in 0..3 {
        big.extend_from_slice(&pad);
    }
    std::fs::write(tmp.join("meminfo"), fixture("host", "meminfo")).unwrap();
    std::fs::write(tmp.join("vmstat"), &big).unwrap();
    let vm = r.read(220_000).unwrap().vm;
    assert_eq!(vm, vmstat("host").unwrap());
    let grew = r.take_degradation().unwrap();
    assert!(
        matches!(
            grew,
            Degradation::Grew {
                file: FileKind::VmStat,
                ..
            }
        ),
        "{grew:?}"
    );
    assert!(grew.to_string().contains("vmstat"), "{grew}");
    assert_eq!(r.take_degradation(), None);
    r.read(220_001).unwrap();
    assert_eq!(r.take_degradation(), None, "told once");
    // Grown so far that a required field falls off: an error naming the
    // growth, and the last snapshot stays.
    let mut big = b"Junk:  1 kB\n".repeat(2000);
    big.extend_from_slice(&fixture("host", "meminfo"));
    std::fs::write(tmp.join("meminfo"), &big).unwrap();
    let e = r.read(230_000).unwrap_err();
    assert_eq!(e.file, FileKind::MemInfo);
    assert!(matches!(e.kind, ReadErrorKind::TooBig { .. }), "{e:?}");
    assert!(e.to_string().contains("meminfo"), "{e}");
    assert_eq!(r.snapshot().time_ms, 220_001);

    // Opening a missing file names the path.
    let e = Reader::open(&tmp.join("nope"), &psi_path).err().unwrap();
    assert!(e.to_string().contains("nope/meminfo"), "{e}");
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// An older kernel's vmstat (per-zone pgscan counters only) and a PSI file
/// that does not parse: the reader carries on with what is there, marks the
/// rest unknown, and tells each once.
#[test]
fn reader_carries_on_without_pgscan_or_psi() {
    let d = dir("degraded");
    let mut v = VmStat::default();
    let known = parse_vmstat(&fixture("degraded", "vmstat"), &mut v).unwrap();
    assert_eq!(known, Known::NONE);
    assert_eq!((v.pgscan_kswapd, v.pgscan_direct), (0, 0));
    assert_eq!(
        parse_vmstat(&fixture("host", "vmstat"), &mut v).unwrap(),
        Known::PGSCAN_KSWAPD.with(Known::PGSCAN_DIRECT)
    );

    let mut r = Reader::open(&d, &d.join("pressure_memory")).unwrap();
    let s = *r.read(100).unwrap();
    assert_eq!(s.mem, meminfo("host").unwrap());
    assert_eq!(s.wm, zoneinfo("host").unwrap());
    assert!(!s.known.contains(Known::PGSCAN_KSWAPD));
    assert!(!s.known.contains(Known::PGSCAN_DIRECT));
    assert!(!s.known.psi());
    assert_eq!(s.psi, PsiAvg::default());
    let mut told = Vec::new();
    while let Some(g) = r.take_degradation() {
        told.push(g);
    }
    assert_eq!(told.len(), 2, "{told:?}");
    assert_eq!(
        told[0],
        Degradation::NoPgscan {
            kswapd: true,
            direct: true
        }
    );
    let Degradation::Psi(e) = told[1] else {
        panic!("{told:?}")
    };
    assert_eq!(e.file, FileKind::Psi);
    assert!(told[1].to_string().contains("full total"), "{}", told[1]);
    assert!(told[0]
        .to_string()
        .contains("pgscan_kswapd and pgscan_direct"));
    // Later reads: same state, nothing told again.
    assert!(!r.read(200).unwrap().known.psi());
    assert_eq!(r.take_degradation(), None);

    // A good directory knows everything.
    let h = dir("host");
    let mut r = Reader::open(&h, &h.join("pressure_memory")).unwrap();
    assert_eq!(r.read(1).unwrap().known, Known::ALL);
    assert_eq!(r.take_degradation(), None);
    // Without a PSI file at all, PSI is unknown (and that is no trouble).
    let mut r = Reader::open(&h, &h.join("no_such_psi")).unwrap();
    assert!(!r.read(1).unwrap().known.psi());
    assert_eq!(r.take_degradation(), None);
}

/// A zoneinfo refresh that fails keeps the last watermarks (told once); a
/// zoneinfo that never parsed is an error.
#[test]
fn reader_keeps_watermarks_when_a_refresh_fails() {
    let tmp = std::env::temp_dir().join(format!("lmkd-pol-zone-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    for f in ["meminfo", "vmstat", "pressure_memory"] {
        std::fs::write(tmp.join(f), fixture("host", f)).unwrap();
    }
    std::fs::write(tmp.join("zoneinfo"), fixture("malformed", "zoneinfo")).unwrap();
    let mut never = Reader::open(&tmp, &tmp.join("pressure_memory")).unwrap();
    let e = never.read(0).unwrap_err();
    assert_eq!(e.file, FileKind::ZoneInfo);
    std::fs::write(tmp.join("zoneinfo"), fixture("host", "zoneinfo")).unwrap();
    let mut r = Reader::open(&tmp, &tmp.join("pressure_memory")).unwrap();
    let wm = r.read(1).unwrap().wm;
    assert_eq!(wm, zoneinfo("host").unwrap());
    std::fs::write(tmp.join("zoneinfo"), fixture("malformed", "zoneinfo")).unwrap();
    r.refresh_watermarks(2, 60_000);
    assert_eq!(r.read(2).unwrap().wm, wm);
    assert!(matches!(
        r.take_degradation(),
        Some(Degradation::StaleWatermarks(_))
    ));
    r.refresh_watermarks(3, 60_000);
    assert_eq!(r.read(3).unwrap().wm, wm);
    assert_eq!(r.take_degradation(), None);
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn reader_on_real_proc() {
    let psi = Path::new("/proc/pressure/memory");
    if !psi.exists() {
        common::skip("reader_on_real_proc", "no PSI on this kernel");
        return;
    }
    let mut r = Reader::open(Path::new("/proc"), psi).unwrap();
    let s = r.read(1).unwrap();
    assert!(s.mem.mem_total_kb > 0 && s.wm.high_kb > 0);
}

#[global_allocator]
static A: common::counting::Counting = common::counting::Counting;

#[test]
fn parsers_and_reader_never_allocate() {
    let bufs: Vec<[Vec<u8>; 4]> = DIRS
        .iter()
        .map(|d| {
            [
                fixture(d, "meminfo"),
                fixture(d, "vmstat"),
                fixture(d, "zoneinfo"),
                fixture(d, "pressure_memory"),
            ]
        })
        .collect();
    let d = dir("small");
    let mut r = Reader::open(&d, &d.join("pressure_memory")).unwrap();
    let bad = dir("malformed");
    let mut bad_r = Reader::open(&bad, &bad.join("pressure_memory")).unwrap();
    let (n, ()) = common::counting::allocations(|| {
        for b in &bufs {
            let _ = parse_meminfo(&b[0], &mut MemInfo::default());
            let _ = parse_vmstat(&b[1], &mut VmStat::default());
            let _ = parse_zoneinfo(&b[2], &mut Watermarks::default());
            let _ = parse_psi(&b[3], &mut PsiAvg::default());
        }
        for i in 0..50u64 {
            assert!(r.read(i * 100_000).is_ok());
            assert!(bad_r.read(i).is_err());
        }
    });
    assert_eq!(n, 0, "parsers or Reader::read allocated");
}
