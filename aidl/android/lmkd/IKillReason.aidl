/*
 * Why a process was killed. These are the values statsd records, carried in
 * the kill stats packet and in KillEvent.reason.
 * Checked against src/proto.rs (mod reason) by tests/aidl_constants.rs.
 */
package android.lmkd;

interface IKillReason {
    /** A kill happened last cycle and free memory is still below the min watermark. */
    const int PRESSURE_AFTER_KILL = 0;
    /** The PSI complete-stall (full) threshold fired: the device is not responding. */
    const int NOT_RESPONDING = 1;
    /** Swap is low and thrashing is above the limit. */
    const int LOW_SWAP_AND_THRASHING = 2;
    /** Swap is low and free memory is below the low watermark. */
    const int LOW_MEM_AND_SWAP = 3;
    /** Free memory is below the low watermark and thrashing is above the limit. */
    const int LOW_MEM_AND_THRASHING = 4;
    /** The kernel is in direct reclaim and thrashing is above the limit. */
    const int DIRECT_RECL_AND_THRASHING = 5;
    /** Free memory is below the low watermark and swap use is above swap_util_max. */
    const int LOW_MEM_AND_SWAP_UTIL = 6;
    /** After a thrashing kill, the file cache is still below filecache_min_kb. */
    const int LOW_FILECACHE_AFTER_THRASHING = 7;
    /** Free memory is below the low watermark and nothing else is wrong. */
    const int LOW_MEM = 8;
    /** Direct reclaim has lasted longer than direct_reclaim_threshold_ms. */
    const int DIRECT_RECL_STUCK = 9;
}
