/*
 * The lmkd control commands, written as an AIDL interface so their
 * arguments have names and types in one place.
 *
 * lmkd does NOT serve this interface over binder. Clients (ActivityManager,
 * init, lmkd --reinit, lmkd-workload) send each call as one datagram on the
 * SOCK_SEQPACKET socket /dev/socket/lmkd: word 0 is the ICommandId of the
 * method, the arguments follow as big-endian 32-bit words, and a method that
 * returns int is answered by the two-word datagram [id, value]. Methods
 * marked oneway get no reply.
 */
package android.lmkd;

interface ILmkd {
    /** ICommandId.TARGET: minfreePages[i] pairs with oomAdj[i]; 1 to 6 levels. */
    oneway void target(in int[] minfreePages, in int[] oomAdj);

    /** ICommandId.PROCPRIO: procType is an IProcType value; forLmkdOnly skips the oom_score_adj write. */
    oneway void procPrio(int pid, int uid, int oomAdj, int procType, boolean forLmkdOnly);

    /** ICommandId.PROCREMOVE */
    oneway void procRemove(int pid);

    /** ICommandId.PROCPURGE */
    oneway void procPurge();

    /** ICommandId.GETKILLCNT: kills whose adj lies in [minAdj, maxAdj]; 0 if minAdj > maxAdj. */
    int getKillCount(int minAdj, int maxAdj);

    /** ICommandId.SUBSCRIBE: event is an ISubscribeEvent value. */
    oneway void subscribe(int event);

    /** ICommandId.UPDATE_PROPS: 0 when the new configuration is in force, -1 when it was refused. */
    int updateProps();

    /** ICommandId.START_MONITORING */
    oneway void startMonitoring();

    /** ICommandId.BOOT_COMPLETED: 0 handled now, 1 already handled, -1 boot not complete. */
    int bootCompleted();

    /**
     * ICommandId.PROCS_PRIO: up to 3 PROCPRIO records in one datagram;
     * all arrays have the same length.
     */
    oneway void procsPrio(in int[] pid, in int[] uid, in int[] oomAdj, in int[] procType,
            in boolean[] forLmkdOnly);
}
