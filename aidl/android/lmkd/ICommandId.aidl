/*
 * Command and message ids of the lmkd control socket (/dev/socket/lmkd).
 *
 * The socket is not binder: each SOCK_SEQPACKET datagram is a list of
 * big-endian 32-bit words and word 0 is one of these ids. AIDL is used here
 * because it is the notation Android platform code already reads, and
 * because these files are the single source of the numbers: the Rust
 * constants in src/proto.rs are checked against them by
 * tests/aidl_constants.rs.
 *
 * Names drop the "LMK_" prefix the framework uses (LMK_TARGET -> TARGET);
 * the values are the ones ActivityManager and init send.
 */
package android.lmkd;

interface ICommandId {
    /** Client -> lmkd: 1..6 (minfree_pages, oom_adj) pairs for the legacy minfree strategy. */
    const int TARGET = 0;
    /** Client -> lmkd: pid, uid, oomadj [, ptype [, for_lmkd_only]]. */
    const int PROCPRIO = 1;
    /** Client -> lmkd: pid. */
    const int PROCREMOVE = 2;
    /** Client -> lmkd: forget the caller's and the unowned records. */
    const int PROCPURGE = 3;
    /** Client -> lmkd: min_adj, max_adj; reply [GETKILLCNT, count]. */
    const int GETKILLCNT = 4;
    /** Client -> lmkd: one ISubscribeEvent value. */
    const int SUBSCRIBE = 5;
    /** lmkd -> subscriber: [PROCKILL, pid, uid, rss_kb], exactly 16 bytes. */
    const int PROCKILL = 6;
    /** Client -> lmkd: re-read the configuration; reply [UPDATE_PROPS, 0 or -1]. */
    const int UPDATE_PROPS = 7;
    /** lmkd -> subscriber: the kill stats packet (fields: see KillEvent). */
    const int STAT_KILL_OCCURRED = 8;
    /** Client -> lmkd: start pressure monitors that were delayed until boot. */
    const int START_MONITORING = 9;
    /** Client -> lmkd: boot finished; reply [BOOT_COMPLETED, 0, 1 or -1]. */
    const int BOOT_COMPLETED = 10;
    /** Client -> lmkd: up to 3 records of (pid, uid, oomadj, ptype [, for_lmkd_only]). */
    const int PROCS_PRIO = 11;
}
