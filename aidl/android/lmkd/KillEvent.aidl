/*
 * One kill, as lmkd reports it. It gathers what the STAT_KILL_OCCURRED
 * packet carries (the wire layout is fixed by ActivityManager and described
 * in PROTOCOL.md, "Kill stats packet") plus the two timings lmkd-rs measures
 * itself. Memory figures lmkd could not read are -1.
 *
 * On the wire the packet uses bytes and pages where noted below; this record
 * uses the units in the field names so readers need not convert.
 */
package android.lmkd;

parcelable KillEvent {
    /** The victim's pid (its pidfd was opened when it was registered). */
    int pid;
    /** The victim's uid, as registered by PROCPRIO. */
    int uid;
    /** The victim's name from /proc/<pid>/cmdline, at most 127 bytes. */
    @utf8InCpp String processName;
    /** The victim's oom_score_adj when it was chosen. */
    int oomScoreAdj;
    /** The lowest oom_score_adj that was eligible in this kill cycle. */
    int minOomScore;
    /** An IKillReason value. */
    int reason;
    /** Resident memory freed by the kill (the wire carries bytes). */
    long rssKb;
    /** Swap freed by the kill (the wire carries bytes). */
    long swapKb;
    /** The victim's page cache (the wire carries bytes). */
    long cacheKb;
    /** The victim's minor and major page faults. */
    long pgFault;
    long pgMajFault;
    /** Process start time in nanoseconds since boot. */
    long processStartTimeNs;
    /** System free memory and free swap when the decision was made. */
    int freeMemKb;
    int freeSwapKb;
    /** Thrashing level (percent of file cache refaulted) now and its maximum this cycle. */
    int thrashing;
    int maxThrashing;
    /** Time from the pressure event to SIGKILL being sent (lmkd-rs only, not on the wire). */
    long eventToSignalUs;
    /** Time from SIGKILL to the victim's pidfd reporting exit (lmkd-rs only, not on the wire). */
    long timeToExitMs;
}
