/*
 * mirror.h - mirrored spools (issue 18): our spool replicated to the peer
 * node, the peer's spool replicated to us, over relay/peer.c's link.
 *
 * main.c calls mirror_spool_options() before it opens the spool (the
 * spool is then a replication master), mirror_init() after (opens the
 * replica of the peer's spool in SPOOL/replica and starts the link), and
 * mirror_shutdown() at the end.  With no `peer` configured every call is
 * a no-op and the spool is not replicated.
 */
#ifndef BACKMX_MIRROR_H
#define BACKMX_MIRROR_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "spool.h"

void mirror_spool_options(const struct config *cfg, struct spool_options *so);
int mirror_init(const struct config *cfg, char *err, size_t errlen);
void mirror_shutdown(void);
int mirror_enabled(void);

enum mirror_takeover_state {
	MIRROR_NORMAL = 0, /* each node delivers its own spool */
	MIRROR_TAKEN_OVER, /* we deliver the peer's spool too */
};

struct mirror_status {
	int enabled;
	int own_up, replica_up; /* the two connections */
	double last_heard;      /* seconds ago the peer was heard; -1 never */
	struct spool_lsn last_sent;     /* our last commit record */
	struct spool_lsn last_acked;    /* the peer has it durably up to */
	uint64_t lag_commits;           /* our commits the peer has not acked */
	double lag_seconds;             /* age of the oldest of them; 0 none */
	int replica_in_sync;            /* the peer's spool: caught up once */
	struct spool_lsn replica_next;  /* next LSN we expect from the peer */
	struct spool_lsn replica_acked; /* what we acknowledged */
	uint64_t acks_sent, acks_received, repl_errors;
	enum mirror_takeover_state takeover;
	const char *ack_mode; /* "peer" / "local" */
	long takeover_after;
};

void mirror_status(struct mirror_status *st);
const char *mirror_takeover_str(enum mirror_takeover_state s);

#endif
