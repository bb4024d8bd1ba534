/*
 * What a subscriber of the lmkd socket receives after each kill, written as
 * a callback interface. Like ILmkd it is a description of datagrams, not a
 * binder service: a connection that sent SUBSCRIBE(ISubscribeEvent.STAT)
 * gets the STAT_KILL_OCCURRED packet (the statistics part of KillEvent), and
 * one that sent SUBSCRIBE(ISubscribeEvent.KILL) then gets the 16-byte
 * PROCKILL packet [PROCKILL, pid, uid, rss_kb].
 */
package android.lmkd;

import android.lmkd.KillEvent;

interface IKillListener {
    oneway void onKill(in KillEvent event);
}
