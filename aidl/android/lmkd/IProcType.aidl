/*
 * Process types carried in PROCPRIO and PROCS_PRIO records.
 * Checked against src/proto.rs (mod ptype) by tests/aidl_constants.rs.
 */
package android.lmkd;

interface IProcType {
    /** An app process, registered by ActivityManager. */
    const int APP = 0;
    /** A native service with an oom_score_adjust, registered by init. */
    const int SERVICE = 1;
}
