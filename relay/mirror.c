/*
 * mirror.c - the glue between the two replicated spools (spool/repl.c)
 * and the peer link (relay/peer.c); see mirror.h.
 *
 * Two replication groups, one per node:
 *   our spool:    we are master; its stream goes out on PEER_CH_OWN
 *                 (the connection we dial); the peer acknowledges with
 *                 ACK frames the LSN up to which its copy is on disk.
 *   peer's spool: we are client of SPOOL/replica; its stream comes in on
 *                 PEER_CH_REPLICA; after each batch of frames that wrote
 *                 permanent records we flush the replica's log (one
 *                 fsync) and send an ACK of the highest such LSN.
 * Why two groups and not one: only a master writes in a group, and both
 * nodes accept mail all the time.
 *
 * Lag: every commit record of our spool that goes out is remembered
 * with its time until the peer's ACK covers it; their number and the
 * age of the oldest are the lag `backmxctl peer` shows.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backmxd.h"
#include "config_peer.h"
#include "log.h"
#include "mirror.h"
#include "mirror_int.h"
#include "peer.h"

#define MIRROR_RING (1u << 16) /* commits remembered for the lag */
#define MIRROR_REPLICA_CACHE (16u * 1024 * 1024)
#define MIRROR_CHECKPOINT_EVERY 30.0 /* seconds, as our own spool's */

struct mirror_pending {
	struct spool_lsn lsn;
	double when;
};

static int mirror_on;
static struct spool *mirror_replica;
static const char *mirror_ack_mode = "peer";
static long mirror_takeover_after;
static struct mirror_pending *mirror_ring;
static size_t mirror_head, mirror_count;
static struct spool_lsn mirror_acked, mirror_replica_acked;
static struct spool_lsn mirror_replica_pending;
static int mirror_need_ack;
static uint64_t mirror_acks_in, mirror_acks_out, mirror_errors;
static double mirror_last_errlog;
static double mirror_own_down_since; /* ev_now() it went down; 0 up */
static ev_timer mirror_ckp_timer;
static uint64_t mirror_replica_ckps;
static uint64_t mirror_incarnation; /* our spool's identity */

int
mirror_enabled(void)
{
	return mirror_on;
}

const char *
mirror_takeover_str(enum mirror_takeover_state s)
{
	return s == MIRROR_TAKEN_OVER ? "taken-over" : "normal";
}

/* mirror_send - a replication message of one of our spools to the link */
static int
mirror_send(void *arg, const void *control, size_t clen, const void *rec,
            size_t rlen, const struct spool_lsn *lsn, uint32_t flags)
{
	int ch = arg == NULL ? PEER_CH_OWN : PEER_CH_REPLICA;
	uint8_t hdr[PEER_FRAME_FIXED];
	int n;

	if (ch == PEER_CH_OWN && lsn != NULL &&
	    (flags & SPOOL_REPL_PERMANENT) && mirror_ring != NULL) {
		size_t i = (mirror_head + mirror_count) % MIRROR_RING;

		if (mirror_count == MIRROR_RING) {
			/* full: forget the oldest (the lag stays a lower
			 * bound; nothing else depends on the ring) */
			mirror_head = (mirror_head + 1) % MIRROR_RING;
			mirror_count--;
			i = (mirror_head + mirror_count) % MIRROR_RING;
		}
		mirror_ring[i].lsn = *lsn;
		mirror_ring[i].when = ev_now(backmxd.loop);
		mirror_count++;
	}
	n = peer_frame_rep(hdr, flags, lsn ? lsn->file : 0,
	                   lsn ? lsn->offset : 0, clen, rlen);
	if (n < 0)
		return -1;
	return peer_send(ch, hdr, (size_t)n, control, clen, rec, rlen);
}

void
mirror_spool_options(const struct config *cfg, struct spool_options *so)
{
	if (cfg->peer == NULL)
		return;
	so->repl_role = SPOOL_REPL_MASTER;
	so->repl_send = mirror_send;
	so->repl_arg = NULL; /* PEER_CH_OWN */
	/* the node whose peer_listen sorts first is node 1 (even id
	 * counters), the other node 2 (odd): both work it out the same */
	so->id_node = memcmp(&cfg->peer->listen, &cfg->peer->addr,
	                     sizeof(cfg->peer->addr)) <= 0
	                  ? 1
	                  : 2;
}

static void mirror_repl_error(const char *which, struct spool *s);

static int
mirror_replica_open(const char *dir, char *why, size_t whylen)
{
	struct spool_options so;

	memset(&so, 0, sizeof(so));
	so.cache_bytes = MIRROR_REPLICA_CACHE;
	so.repl_role = SPOOL_REPL_CLIENT;
	so.repl_send = mirror_send;
	so.repl_arg = &mirror_on; /* not NULL: PEER_CH_REPLICA */
	mirror_replica = spool_open_opts(dir, &so, NULL, why, whylen);
	return mirror_replica != NULL ? 0 : -1;
}

/* mirror_aside_name - SPOOL/replica-ID, or replica-ID.N when that is
 * taken (a takeover of the same spool still under way) */
static void
mirror_aside_name(uint64_t id, char *dir, size_t len)
{
	for (int n = 0; n < 1000; n++) {
		if (n == 0)
			snprintf(dir, len, "%s/replica-%016llx",
			         backmxd.cfg->spool, (unsigned long long)id);
		else
			snprintf(dir, len, "%s/replica-%016llx.%d",
			         backmxd.cfg->spool, (unsigned long long)id, n);
		if (access(dir, F_OK) < 0 && errno == ENOENT)
			return;
	}
}

int
mirror_replica_release(char *dir, size_t len)
{
	const char *spool = backmxd.cfg->spool;
	char live[4096];
	uint64_t id;

	if (mirror_replica == NULL)
		return -1;
	id = spool_repl_id_get(mirror_replica, SPOOL_REPL_MASTER_FILE);
	snprintf(live, sizeof(live), "%s/replica", spool);
	if (spool_repl_client_close(mirror_replica) == 1)
		log_warn("peer: the replica of the peer's spool was in its "
		         "first synchronisation: its copy may be incomplete");
	mirror_replica = NULL;
	mirror_need_ack = 0;
	/* aside: the takeover reads it from there while a new replica is
	 * opened in its place; a crash before the import is done resumes
	 * it at the next start */
	mirror_aside_name(id, dir, len);
	if (rename(live, dir) < 0) {
		log_err("takeover: cannot move %s to %s: %m; taking it over "
		        "where it is",
		        live, dir);
		snprintf(dir, len, "%s", live);
		return 1;
	}
	return 0;
}

int
mirror_replica_reopen(void)
{
	char dir[4096], why[512];

	if (mirror_replica != NULL)
		return 0;
	snprintf(dir, sizeof(dir), "%s/replica", backmxd.cfg->spool);
	if (mirror_replica_open(dir, why, sizeof(why)) < 0) {
		log_err("peer: cannot open a new replica %s: %s", dir, why);
		return -1;
	}
	memset(&mirror_replica_pending, 0, sizeof(mirror_replica_pending));
	if (peer_up(PEER_CH_REPLICA) && spool_repl_start(mirror_replica) < 0)
		mirror_repl_error("the peer's spool", mirror_replica);
	return 0;
}

static void
mirror_repl_error(const char *which, struct spool *s)
{
	double now = ev_now(backmxd.loop);

	mirror_errors++;
	/* at most one line a second: a confused peer could send many */
	if (now - mirror_last_errlog >= 1.0) {
		mirror_last_errlog = now;
		log_warn("peer: replication of %s: %s", which, spool_error(s));
	}
}

/*
 * mirror_replica_check - the peer's spool has the identity inc: when our
 * replica copies another one (the peer's disk was replaced), keep the
 * old replica aside as SPOOL/replica-ID (its mail was acknowledged and
 * may not be delivered yet: takeover delivers it) and start a new one.
 */
static void
mirror_replica_check(uint64_t inc)
{
	const struct config *cfg = backmxd.cfg;
	uint64_t known;
	char dir[4096], old[4200], why[512];

	if (inc == 0 || mirror_replica == NULL)
		return;
	known = spool_repl_id_get(mirror_replica, SPOOL_REPL_MASTER_FILE);
	if (known == inc)
		return;
	if (known != 0) {
		snprintf(dir, sizeof(dir), "%s/replica", cfg->spool);
		mirror_aside_name(known, old, sizeof(old));
		spool_close(mirror_replica);
		mirror_replica = NULL;
		if (rename(dir, old) < 0) {
			log_err(
			    "peer: the peer's spool is a new one (id %016llx, "
			    "was %016llx) but %s cannot be moved aside: %m; "
			    "not replicating it",
			    (unsigned long long)inc, (unsigned long long)known,
			    dir);
			return;
		}
		log_warn("peer: the peer's spool is a new one (id %016llx, was "
		         "%016llx: its disk was replaced?); the replica of the "
		         "old one is kept in %s for takeover",
		         (unsigned long long)inc, (unsigned long long)known,
		         old);
		/* its old spool is gone for good: its mail is ours */
		mirror_takeover_aside(old);
		if (mirror_replica_open(dir, why, sizeof(why)) < 0) {
			log_err("peer: cannot open a new replica %s: %s", dir,
			        why);
			return;
		}
	}
	if (spool_repl_id_put(mirror_replica, SPOOL_REPL_MASTER_FILE, inc) < 0)
		log_err("peer: %s", spool_error(mirror_replica));
}

static void
mirror_up(int ch)
{
	/*
	 * Announce the role on every new connection: the master's
	 * NEWMASTER makes a client that lost messages ask for them; the
	 * client's NEWCLIENT makes the master answer, so an empty replica
	 * (a replaced disk) is rebuilt by BDB's internal init.
	 */
	if (ch == PEER_CH_OWN) {
		mirror_own_down_since = 0;
		if (spool_repl_start(backmxd.spool) < 0)
			mirror_repl_error("our spool", backmxd.spool);
	} else {
		/* the peer's LSNs can go back (a restart that lost its
		 * unsynced log tail, a new disk): acknowledge from scratch */
		memset(&mirror_replica_pending, 0,
		       sizeof(mirror_replica_pending));
		mirror_need_ack = 0;
		mirror_takeover_heard();
		mirror_replica_check(peer_incarnation(PEER_CH_REPLICA));
		/* what we delivered for its spool while it was away */
		mirror_takeover_send_list(peer_incarnation(PEER_CH_REPLICA));
		if (mirror_replica != NULL &&
		    spool_repl_start(mirror_replica) < 0)
			mirror_repl_error("the peer's spool", mirror_replica);
	}
}

static void
mirror_down(int ch)
{
	if (ch == PEER_CH_REPLICA)
		mirror_need_ack = 0;
	else
		mirror_own_down_since = ev_now(backmxd.loop);
}

double
mirror_own_down_for(void)
{
	if (mirror_own_down_since == 0)
		return 0;
	return ev_now(backmxd.loop) - mirror_own_down_since;
}

/* mirror_acked_to - the peer holds our spool durably up to lsn */
static void
mirror_acked_to(const struct spool_lsn *lsn)
{
	mirror_acks_in++;
	if (spool_lsn_cmp(lsn, &mirror_acked) > 0)
		mirror_acked = *lsn;
	while (mirror_count > 0 && spool_lsn_cmp(&mirror_ring[mirror_head].lsn,
	                                         &mirror_acked) <= 0) {
		mirror_head = (mirror_head + 1) % MIRROR_RING;
		mirror_count--;
	}
	mirror_gate_acked(&mirror_acked);
}

static int
mirror_frame(int ch, const struct peer_frame *f)
{
	struct spool *s = ch == PEER_CH_OWN ? backmxd.spool : mirror_replica;
	struct spool_lsn perm;
	int r;

	switch (f->type) {
	case PEER_F_REP:
		if (s == NULL)
			return 0;
		r = spool_repl_process(s, f->control, f->control_len, f->rec,
		                       f->rec_len, &perm);
		if (r < 0) {
			mirror_repl_error(ch == PEER_CH_OWN
			                      ? "our spool"
			                      : "the peer's spool",
			                  s);
			return 0;
		}
		if (r == 1 && ch == PEER_CH_REPLICA &&
		    spool_lsn_cmp(&perm, &mirror_replica_pending) > 0) {
			mirror_replica_pending = perm;
			mirror_need_ack = 1;
		}
		return 0;
	case PEER_F_TAKEN:
		if (ch == PEER_CH_OWN &&
		    mirror_takeover_list_in(f, mirror_incarnation) == 1) {
			uint8_t hdr[PEER_FRAME_FIXED];
			int n = peer_frame_state(hdr, 0, PEER_STATE_LIST_DONE);

			peer_send(PEER_CH_OWN, hdr, (size_t)n, NULL, 0, NULL,
			          0);
		}
		return 0;
	case PEER_F_STATE:
		if (ch == PEER_CH_REPLICA && (f->state & PEER_STATE_LIST_DONE))
			mirror_takeover_list_done(
			    peer_incarnation(PEER_CH_REPLICA));
		return 0;
	case PEER_F_ACK:
		if (ch == PEER_CH_OWN) {
			struct spool_lsn l = {f->lsn_file, f->lsn_off};

			mirror_acked_to(&l);
		}
		return 0;
	default:
		return 0;
	}
}

/* mirror_batch_end - after a read of several frames: make what the
 * replica wrote durable with one fsync, then acknowledge it */
static void
mirror_batch_end(int ch)
{
	uint8_t hdr[PEER_FRAME_FIXED];
	int n;

	if (ch != PEER_CH_REPLICA || !mirror_need_ack || mirror_replica == NULL)
		return;
	if (spool_sync(mirror_replica) < 0) {
		mirror_repl_error("the peer's spool (flush)", mirror_replica);
		return; /* no ACK: the peer's clients get 451 */
	}
	mirror_need_ack = 0;
	n = peer_frame_ack(hdr, mirror_replica_pending.file,
	                   mirror_replica_pending.offset);
	if (peer_send(PEER_CH_REPLICA, hdr, (size_t)n, NULL, 0, NULL, 0) == 0) {
		mirror_acks_out++;
		mirror_replica_acked = mirror_replica_pending;
	}
}

static const struct peer_handlers mirror_handlers = {
    mirror_up,
    mirror_down,
    mirror_frame,
    mirror_batch_end,
};

/* mirror_ckp_cb - the replica's pages to disk and its old logs removed:
 * a client's log otherwise keeps every record the peer ever wrote */
static void
mirror_ckp_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	if (mirror_replica == NULL)
		return;
	if (spool_repl_client_checkpoint(mirror_replica) < 0)
		mirror_repl_error("the peer's spool (checkpoint)",
		                  mirror_replica);
	else
		mirror_replica_ckps++;
}

int
mirror_init(const struct config *cfg, char *err, size_t errlen)
{
	char dir[4096], why[512];

	if (cfg->peer == NULL)
		return 0;
	mirror_ack_mode = config_peer_ack_str(cfg->peer->ack);
	mirror_takeover_after = cfg->peer->takeover_after;
	if ((mirror_ring = calloc(MIRROR_RING, sizeof(*mirror_ring))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	snprintf(dir, sizeof(dir), "%s/replica", cfg->spool);
	if (mirror_replica_open(dir, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "replica of the peer's spool %s: %s", dir,
		         why);
		return -1;
	}
	mirror_on = 1;
	ev_timer_init(&mirror_ckp_timer, mirror_ckp_cb, MIRROR_CHECKPOINT_EVERY,
	              MIRROR_CHECKPOINT_EVERY);
	ev_timer_start(backmxd.loop, &mirror_ckp_timer);
	mirror_own_down_since = ev_now(backmxd.loop);
	if (cfg->peer->ack == PEER_ACK_PEER)
		mirror_gate_init((double)cfg->peer->ack_timeout);
	mirror_incarnation = spool_repl_incarnation(backmxd.spool);
	peer_set_incarnation(mirror_incarnation);
	mirror_takeover_init(cfg->peer->takeover_after);
	peer_start(&mirror_handlers);
	return 0;
}

void
mirror_shutdown(void)
{
	if (!mirror_on)
		return;
	mirror_gate_flush();
	ev_timer_stop(backmxd.loop, &mirror_ckp_timer);
	mirror_takeover_shutdown();
	peer_shutdown();
	if (mirror_replica != NULL) {
		/* never waits for a synchronisation in progress (it needs
		 * the link, which is closed now): restarted next time */
		if (spool_repl_client_close(mirror_replica) == 1)
			log_info("peer: the replica of the peer's spool was "
			         "synchronising; it resumes at the next start");
		mirror_replica = NULL;
	}
	free(mirror_ring);
	mirror_ring = NULL;
	mirror_on = 0;
}

void
mirror_status(struct mirror_status *st)
{
	struct spool_repl_status rs;
	double now = ev_now(backmxd.loop), heard = peer_last_heard();

	memset(st, 0, sizeof(*st));
	if (!mirror_on)
		return;
	st->enabled = 1;
	st->own_up = peer_up(PEER_CH_OWN);
	st->replica_up = peer_up(PEER_CH_REPLICA);
	st->last_heard = heard > 0 ? now - heard : -1;
	st->last_sent = spool_repl_last_perm(backmxd.spool);
	st->last_acked = mirror_acked;
	st->lag_commits = mirror_count;
	st->lag_seconds =
	    mirror_count > 0 ? now - mirror_ring[mirror_head].when : 0;
	if (mirror_replica != NULL) {
		spool_repl_status(mirror_replica, &rs);
		st->replica_in_sync = rs.in_sync;
		st->replica_next = rs.next;
	}
	st->replica_acked = mirror_replica_acked;
	st->acks_sent = mirror_acks_out;
	st->acks_received = mirror_acks_in;
	st->repl_errors = mirror_errors;
	st->replica_checkpoints = mirror_replica_ckps;
	st->takeover = mirror_takeover_state();
	st->ack_mode = mirror_ack_mode;
	st->takeover_after = mirror_takeover_after;
}
