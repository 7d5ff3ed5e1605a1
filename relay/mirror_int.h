/*
 * mirror_int.h - between the files of the mirror (mirror.c, the
 * replication glue; mirror_gate.c, the 250 that waits for the peer).
 */
#ifndef BACKMX_MIRROR_INT_H
#define BACKMX_MIRROR_INT_H

#include "spool.h"

/* mirror.c: seconds our spool's link has been down (0 when up) */
double mirror_own_down_for(void);

/* mirror.c: the live replica.  mirror_replica_release - close it and
 * move it aside to SPOOL/replica-ID, that directory into dir (0; 1 when
 * it could not be moved: dir is SPOOL/replica, reopen only after the
 * import; -1 when there is none); mirror_replica_reopen - a new, empty
 * one in SPOOL/replica */
int mirror_replica_release(char *dir, size_t len);
int mirror_replica_reopen(void);

/* mirror_takeover.c */
void mirror_takeover_init(long after);
void mirror_takeover_shutdown(void);
/* mirror_takeover_aside - the replica of a spool the peer lost for good
 * (SPOOL/replica-ID): taken over from now on (mirror_takeover.c imports
 * it a batch of messages per loop iteration) */
void mirror_takeover_aside(const char *dir);
/* mirror_takeover_heard - the peer's connection is up again */
void mirror_takeover_heard(void);
/* the TAKEN list: sent to the peer for its spool inc; the peer has
 * applied it (its STATE); the peer's list for our spool ours came in
 * (1: applied, tell the peer) */
void mirror_takeover_send_list(uint64_t inc);
void mirror_takeover_list_done(uint64_t inc);
struct peer_frame;
int mirror_takeover_list_in(const struct peer_frame *f, uint64_t ours);

/* mirror_gate.c */
/* mirror_gate_init - `peer_ack peer`: gate replies, wait at most timeout */
void mirror_gate_init(double timeout);
/* mirror_gate_acked - the peer holds our spool durably up to acked */
void mirror_gate_acked(const struct spool_lsn *acked);

#endif
