/*
 * Argument of the SUBSCRIBE command: which notifications a connection wants.
 * A subscription lasts as long as the connection; there is no unsubscribe.
 * Checked against src/proto.rs (mod event) by tests/aidl_constants.rs.
 */
package android.lmkd;

interface ISubscribeEvent {
    /** Receive the 16-byte PROCKILL message after every kill. */
    const int KILL = 0;
    /** Receive the STAT_KILL_OCCURRED packet after every kill (sent before PROCKILL). */
    const int STAT = 1;
}
