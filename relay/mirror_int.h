/*
 * mirror_int.h - between the files of the mirror (mirror.c, the
 * replication glue; mirror_gate.c, the 250 that waits for the peer).
 */
#ifndef BACKMX_MIRROR_INT_H
#define BACKMX_MIRROR_INT_H

#include "spool.h"

/* mirror.c: seconds our spool's link has been down (0 when up) */
double mirror_own_down_for(void);

/* mirror_gate.c */
/* mirror_gate_init - `peer_ack peer`: gate replies, wait at most timeout */
void mirror_gate_init(double timeout);
/* mirror_gate_acked - the peer holds our spool durably up to acked */
void mirror_gate_acked(const struct spool_lsn *acked);

#endif
