//! Which of the daemon's own file pages stay in RAM once it has started.
//!
//! Start-up locks everything (`protect::lock_self`), which keeps the whole
//! executable resident: a static build carries about 850 kB of code, most
//! of it run once or never (the configuration parser, the control plane's
//! JSON, the panic printer's unwinding tables). The link puts every
//! function the kill path runs into one output section, `.text.kill_path`
//! (`src/hot_text.ld`, applied by `build.rs`), so after start-up
//! [`trim`] hands the rest back: those pages stay locked *on fault*
//! (`MLOCK_ONFAULT`), are dropped from the page tables now, and come back
//! (locked again) only if a thread off the kill path runs them. The hot
//! section and `.rodata` stay populated, so the core and reaper never
//! fault on code or constants.
//!
//! The planning is pure ([`sections`], [`cold_ranges`]) and tested on
//! data; [`trim`] reads `/proc/self/exe` and `/proc/self/smaps` and makes
//! the system calls.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};

/// Read-only sections handed back: code outside `.text.kill_path`, the
/// unwinding tables (panics abort; only a backtrace reads them) and the
/// relocations applied before `main`. Everything else stays populated:
/// the kill path's code, `.rodata`, a dynamic build's call stubs.
const COLD: [&str; 7] = [
    ".text",
    ".text.start_up",
    ".text.after_start",
    ".eh_frame",
    ".eh_frame_hdr",
    ".gcc_except_table",
    ".rela.dyn",
];

/// Where a section of the executable lies in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub offset: u64,
    pub size: u64,
}

/// One mapping of the executable, from `/proc/self/smaps`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: usize,
    pub end: usize,
    /// File offset of `start`.
    pub offset: u64,
    pub writable: bool,
    /// Pages copied on write (relocated data): never dropped, their
    /// contents exist nowhere else.
    pub anonymous_kb: u64,
}

/// What [`trim`] did, for the start-up log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// Populated and locked: the kill path's code and constants.
    pub hot_kb: usize,
    /// Locked on fault and dropped now.
    pub cold_kb: usize,
    /// The main thread's stack below what the core uses, dropped too.
    pub stack_kb: usize,
}

fn elf_error(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("/proc/self/exe: {what}"),
    )
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The section headers of a 64-bit little-endian ELF file, through
/// `read(offset, len)`. Sections without file contents (`.bss`) and
/// without a name are left out.
pub fn sections(
    read: &mut dyn FnMut(u64, usize) -> io::Result<Vec<u8>>,
) -> io::Result<Vec<Section>> {
    const SHT_NOBITS: u32 = 8;
    let eh = read(0, 64)?;
    if eh.get(..4) != Some(b"\x7fELF") {
        return Err(elf_error("not an ELF file"));
    }
    if eh.get(4..6) != Some(&[2, 1]) {
        return Err(elf_error("not 64-bit little-endian ELF"));
    }
    let bad = || elf_error("truncated ELF header");
    let shoff = u64_at(&eh, 0x28).ok_or_else(bad)?;
    let shentsize = u16_at(&eh, 0x3a).ok_or_else(bad)? as usize;
    let shnum = u16_at(&eh, 0x3c).ok_or_else(bad)? as usize;
    let shstrndx = u16_at(&eh, 0x3e).ok_or_else(bad)? as usize;
    if shentsize < 64 || shnum == 0 || shstrndx >= shnum {
        return Err(elf_error("no usable section headers"));
    }
    let table = read(shoff, shentsize * shnum)?;
    let header = |i: usize| table.get(i * shentsize..i * shentsize + 64);
    let bad = || elf_error("truncated section headers");
    let strtab_hdr = header(shstrndx).ok_or_else(bad)?;
    let strtab = read(
        u64_at(strtab_hdr, 24).ok_or_else(bad)?,
        u64_at(strtab_hdr, 32).ok_or_else(bad)? as usize,
    )?;
    let mut out = Vec::with_capacity(shnum);
    for i in 0..shnum {
        let h = header(i).ok_or_else(bad)?;
        let (Some(name), Some(kind), Some(offset), Some(size)) =
            (u32_at(h, 0), u32_at(h, 4), u64_at(h, 24), u64_at(h, 32))
        else {
            return Err(bad());
        };
        let name = strtab
            .get(name as usize..)
            .and_then(|s| s.split(|&c| c == 0).next())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .unwrap_or_default();
        if kind == SHT_NOBITS || name.is_empty() {
            continue;
        }
        out.push(Section { name, offset, size });
    }
    Ok(out)
}

/// The address range a `maps`/`smaps` mapping line starts with.
fn range(line: &str) -> Option<(usize, usize)> {
    let (a, b) = line.split_whitespace().next()?.split_once('-')?;
    Some((
        usize::from_str_radix(a, 16).ok()?,
        usize::from_str_radix(b, 16).ok()?,
    ))
}

/// The executable's mappings in `smaps` text, told apart by device and
/// inode (`dev` as the kernel prints it, `major:minor` in hex).
pub fn exe_mappings(smaps: &str, dev: &str, inode: u64) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    let mut ours = false;
    for line in smaps.lines() {
        if let Some((start, end)) = range(line) {
            let mut f = line.split_whitespace().skip(1);
            let writable = f.next().is_some_and(|p| p.contains('w'));
            let offset = f.next().and_then(|o| u64::from_str_radix(o, 16).ok());
            let d = f.next();
            let ino = f.next().and_then(|i| i.parse::<u64>().ok());
            ours = d == Some(dev) && ino == Some(inode);
            if let (true, Some(offset)) = (ours, offset) {
                out.push(Mapping {
                    start,
                    end,
                    offset,
                    writable,
                    anonymous_kb: 0,
                });
            }
        } else if let (true, Some(kb)) = (ours, line.strip_prefix("Anonymous:")) {
            if let Some(m) = out.last_mut() {
                // Unreadable counts as copied: such a mapping is kept.
                m.anonymous_kb = kb
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .unwrap_or(u64::MAX);
            }
        }
    }
    out
}

/// The page ranges to hand back: pages of read-only, never-copied
/// mappings whose file contents are all in [`COLD`] sections (a page
/// shared with any other section stays). Without a `.text.kill_path` section (a link
/// without the script) code stays whole; only the unwinding tables and
/// relocations are handed back.
pub fn cold_ranges(sections: &[Section], maps: &[Mapping], page: usize) -> Vec<(usize, usize)> {
    let linked_hot = sections.iter().any(|s| s.name == ".text.kill_path");
    let is_cold =
        |s: &Section| COLD.contains(&s.name.as_str()) && (linked_hot || s.name != ".text");
    let page = page as u64;
    let mut out: Vec<(usize, usize)> = Vec::new();
    for m in maps.iter().filter(|m| !m.writable && m.anonymous_kb == 0) {
        let mut at = m.start;
        while at < m.end {
            let lo = m.offset + (at - m.start) as u64;
            let hi = lo + page;
            let touching = sections
                .iter()
                .filter(|s| s.size > 0 && s.offset < hi && lo < s.offset + s.size);
            let mut any = false;
            let mut cold = true;
            for s in touching {
                any = true;
                cold &= is_cold(s);
            }
            if any && cold {
                match out.last_mut() {
                    Some(r) if r.1 == at => r.1 = at + page as usize,
                    _ => out.push((at, at + page as usize)),
                }
            }
            at += page as usize;
        }
    }
    out
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

/// Hands the executable's cold pages back (see the module docs). Call on
/// the main thread after start-up, once memory is locked; a failure
/// leaves the pages locked as they were.
pub fn trim() -> io::Result<Trimmed> {
    let smaps = std::fs::read_to_string("/proc/self/smaps")
        .map_err(|e| io::Error::new(e.kind(), format!("read /proc/self/smaps: {e}")))?;
    let page = page_size();
    let mut t = Trimmed {
        stack_kb: trim_stack(&smaps, page)?,
        ..Trimmed::default()
    };
    let exe = File::open("/proc/self/exe")
        .map_err(|e| io::Error::new(e.kind(), format!("open /proc/self/exe: {e}")))?;
    let meta = exe
        .metadata()
        .map_err(|e| io::Error::new(e.kind(), format!("fstat /proc/self/exe: {e}")))?;
    let mut read = |offset: u64, len: usize| {
        let mut buf = vec![0u8; len];
        exe.read_exact_at(&mut buf, offset)
            .map(|()| buf)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("read {len} bytes at {offset} of /proc/self/exe: {e}"),
                )
            })
    };
    let secs = sections(&mut read)?;
    // The kernel prints devices as major:minor in hex, two digits at least.
    let dev = meta.dev();
    let dev = format!("{:02x}:{:02x}", libc::major(dev), libc::minor(dev));
    let maps = exe_mappings(&smaps, &dev, meta.ino());
    for (start, end) in cold_ranges(&secs, &maps, page) {
        // SAFETY: read-only pages of our own executable that were never
        // copied (`cold_ranges` keeps those): the page cache has them.
        unsafe { relock_on_fault(start, end - start, true)? };
        t.cold_kb += (end - start) / 1024;
    }
    t.hot_kb = maps
        .iter()
        .filter(|m| !m.writable)
        .map(|m| (m.end - m.start) / 1024)
        .sum::<usize>()
        - t.cold_kb;
    Ok(t)
}

/// The main thread's stack below what the core needs: locking populated
/// the whole initial stack mapping the kernel set up (132 kB), and the
/// core runs at most [`CORE_STACK`](crate::protect::CORE_STACK) below
/// this frame (pre-faulted by `lock_self`). Returns the kB handed back.
#[inline(never)]
fn trim_stack(smaps: &str, page: usize) -> io::Result<usize> {
    let here = &page as *const usize as usize;
    let stack = smaps.lines().find_map(|l| {
        let (a, b) = range(l)?;
        (l.ends_with("[stack]") && a <= here && here < b).then_some(a)
    });
    // A page of margin for this function's own frame.
    let keep_from = here.saturating_sub(crate::protect::CORE_STACK + page) & !(page - 1);
    match stack {
        Some(start) if start < keep_from => {
            // SAFETY: the range lies below the deepest frame the core
            // reaches (nothing lives there now), so dropping its pages
            // loses nothing: a touch would fault in a zeroed page, locked.
            unsafe { relock_on_fault(start, keep_from - start, false)? };
            Ok((keep_from - start) / 1024)
        }
        _ => Ok(0),
    }
}

/// Unlocks, drops and re-locks on fault one range of pages; with `split`,
/// first makes each page a mapping of its own.
///
/// The split matters for file pages: a fault in a file mapping also maps
/// up to 64 kB of neighbouring pages already in the page cache
/// ("fault-around", or a whole large folio), but never past the mapping's
/// ends. Every other page is marked `MADV_RANDOM`, a flag the kernel will
/// not merge across, so a cold function that runs later brings in its own
/// pages and no more. Splitting after the drop would let the faults of
/// this very code (and of other threads) map 64 kB windows of the
/// still-whole range.
///
/// # Safety
/// The range must hold nothing that would be lost by dropping it: file
/// pages never written, or memory no longer in use.
unsafe fn relock_on_fault(addr: usize, len: usize, split: bool) -> io::Result<()> {
    let p = addr as *mut libc::c_void;
    let err = |call: &str| {
        let e = io::Error::last_os_error();
        io::Error::new(e.kind(), format!("{call} of {len} bytes at {addr:#x}: {e}"))
    };
    let page = page_size();
    // SAFETY: munlock and madvise change only how the caller's range is
    // kept; the caller vouches that dropping its contents is harmless.
    unsafe {
        if libc::munlock(p, len) != 0 {
            return Err(err("munlock"));
        }
        let mut at = addr + page;
        while split && at < addr + len {
            if libc::madvise(at as *mut libc::c_void, page, libc::MADV_RANDOM) != 0 {
                return Err(err("madvise(MADV_RANDOM)"));
            }
            at += 2 * page;
        }
        if libc::madvise(p, len, libc::MADV_DONTNEED) != 0 {
            return Err(err("madvise(MADV_DONTNEED)"));
        }
        if libc::syscall(libc::SYS_mlock2, p, len, libc::MLOCK_ONFAULT) != 0 {
            return Err(err("mlock2(MLOCK_ONFAULT)"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sec(name: &str, offset: u64, size: u64) -> Section {
        Section {
            name: name.into(),
            offset,
            size,
        }
    }

    fn map(start: usize, end: usize, offset: u64) -> Mapping {
        Mapping {
            start,
            end,
            offset,
            writable: false,
            anonymous_kb: 0,
        }
    }

    /// A static build's layout, in pages of 0x1000: relocations and
    /// constants and unwinding tables in one read-only segment, code in
    /// the next.
    fn layout() -> (Vec<Section>, Vec<Mapping>) {
        let secs = vec![
            sec(".rela.dyn", 0x300, 0x1d00),
            sec(".rodata", 0x2000, 0x1800),
            sec(".eh_frame_hdr", 0x3800, 0x800),
            sec(".eh_frame", 0x4000, 0x2000),
            sec(".text.kill_path", 0x6000, 0x1800),
            sec(".text", 0x7800, 0x4800),
        ];
        let maps = vec![map(0x10000, 0x16000, 0), map(0x16000, 0x1c000, 0x6000)];
        (secs, maps)
    }

    #[test]
    fn keeps_hot_code_and_constants_and_hands_back_the_rest() {
        let (secs, maps) = layout();
        assert_eq!(
            cold_ranges(&secs, &maps, 0x1000),
            [
                // The header's page and the relocations (.rela.dyn ends
                // where .rodata begins).
                (0x10000, 0x12000),
                // The page .rodata shares with .eh_frame_hdr stays; the
                // unwinding tables go.
                (0x14000, 0x16000),
                // The page .text.kill_path shares with .text stays.
                (0x18000, 0x1c000),
            ]
        );
    }

    #[test]
    fn without_a_hot_section_code_stays_whole() {
        let (mut secs, maps) = layout();
        secs.retain(|s| s.name != ".text.kill_path");
        assert_eq!(
            cold_ranges(&secs, &maps, 0x1000),
            [(0x10000, 0x12000), (0x14000, 0x16000)]
        );
    }

    #[test]
    fn copied_or_writable_mappings_are_never_dropped() {
        let (secs, mut maps) = layout();
        maps[0].anonymous_kb = 4;
        maps[1].writable = true;
        assert!(cold_ranges(&secs, &maps, 0x1000).is_empty());
    }

    #[test]
    fn reads_exe_mappings_from_smaps() {
        let smaps = "\
55d0c0000000-55d0c0001000 r--p 00000000 fe:00 42                         /bin/lmkd
Rss:                   4 kB
Anonymous:             0 kB
55d0c0001000-55d0c0002000 r-xp 00001000 fe:00 42                         /bin/lmkd
Anonymous:             0 kB
55d0c0002000-55d0c0003000 rw-p 00002000 fe:00 42                         /bin/lmkd
Anonymous:             4 kB
55d0c0003000-55d0c0004000 r--p 00000000 fe:00 43                         /bin/other
Anonymous:             0 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
Anonymous:           132 kB
";
        let m = exe_mappings(smaps, "fe:00", 42);
        assert_eq!(m.len(), 3);
        assert_eq!(
            (m[1].start, m[1].offset, m[1].writable),
            (0x55d0c0001000, 0x1000, false)
        );
        assert_eq!((m[2].writable, m[2].anonymous_kb), (true, 4));
    }

    /// The test binary itself is an ELF file with the usual sections.
    #[test]
    fn reads_section_headers_of_a_real_executable() {
        let exe = File::open("/proc/self/exe").unwrap();
        let mut read = |offset: u64, len: usize| {
            let mut buf = vec![0u8; len];
            exe.read_exact_at(&mut buf, offset).map(|()| buf)
        };
        let secs = sections(&mut read).unwrap();
        let names: Vec<&str> = secs.iter().map(|s| s.name.as_str()).collect();
        for want in [".text", ".rodata", ".text.kill_path"] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        let mut junk = |_: u64, len: usize| Ok(vec![0u8; len]);
        assert!(sections(&mut junk).is_err());
    }
}
