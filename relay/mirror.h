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
	uint64_t replica_checkpoints; /* the replica's own (old logs removed) */
	enum mirror_takeover_state takeover;
	const char *ack_mode; /* "peer" / "local" */
	long takeover_after;
};

void mirror_status(struct mirror_status *st);

/*
 * The `peer_ack peer` gate (mirror_gate.c).  mirror_gate_commit - call
 * right after a message's spool commit: MIRROR_GATE_NONE, nothing to
 * wait for (no peer, `peer_ack local`, or already acknowledged);
 * MIRROR_GATE_WAIT, done(arg, ok) is called later (never from inside
 * this call) with ok 1 once the peer's ACK covers the commit, 0 when it
 * did not come within the bound (`peer_ack peer TIMEOUT`, 5 s by
 * default); MIRROR_GATE_FAILED, no ACK can come in time (the link has
 * been down longer than the bound): answer as for ok 0 at once.
 * mirror_gate_flush - at shutdown: every waiting done(arg, 0) now.
 */
typedef void mirror_gate_fn(void *arg, int ok);
enum { MIRROR_GATE_NONE = 0, MIRROR_GATE_WAIT, MIRROR_GATE_FAILED };
int mirror_gate_commit(mirror_gate_fn *done, void *arg);
void mirror_gate_flush(void);
/* the bound in seconds; 0 when replies are not gated */
double mirror_gate_timeout(void);

struct mirror_gate_stats {
	uint64_t gated;     /* replies that needed the peer's ACK */
	uint64_t acked;     /* ... got it in time: 250 */
	uint64_t timeouts;  /* ... did not: 451 4.3.0 */
	uint64_t link_down; /* of the timeouts: answered at once, link down */
	uint64_t waiting;   /* waiting now */
};
void mirror_gate_status(struct mirror_gate_stats *st);
const char *mirror_takeover_str(enum mirror_takeover_state s);

/*
 * Takeover (mirror_takeover.c).  mirror_takeover_now - deliver the mail
 * held in our replica of the peer's spool as ours now (`backmxctl
 * takeover`; also by itself after `takeover_after` of silence); -1 with
 * err when it failed or was done already.  mirror_forward_held - 1
 * while our forwarder waits at start for the peer's list of our
 * messages it delivered (at most takeover_after).
 */
int mirror_takeover_now(const char *why, char *err, size_t errlen);
enum mirror_takeover_state mirror_takeover_state(void);
int mirror_forward_held(void);
struct mirror_takeover_stats {
	uint64_t takeovers;       /* times we took the peer's mail over */
	uint64_t messages, bytes; /* ... messages imported into our spool */
	uint64_t already, reid;   /* imported before; under a new id */
	uint64_t list_sent;       /* ids sent back to the returned peer */
	uint64_t not_redelivered; /* ours the peer delivered: removed here */
	uint64_t duplicates;      /* ours delivered by both nodes */
};
void mirror_takeover_status(struct mirror_takeover_stats *st);

/*
 * The counters above as name/value rows (mirror_metrics.c), for
 * `backmxctl stats` (name) and the Prometheus page (metric, help); 0
 * rows when no peer is configured.
 */
#define MIRROR_COUNTERS_MAX 16
struct mirror_counter {
	const char *name, *metric, *help;
	int is_gauge;
	uint64_t value;
};
size_t mirror_counters(struct mirror_counter *out, size_t max);
struct json_buf;
void mirror_metrics_page(struct json_buf *b);

#endif
