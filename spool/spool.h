/*
 * spool.h - the Berkeley DB spool of backmx and the retry schedule.
 *
 * A transactional BDB environment (TXN, LOCK, LOG, MPOOL, DB_RECOVER,
 * DB_REGISTER) in one directory holds:
 *   envelopes.db  id -> serialized envelope (sender, DSN, per-rcpt state)
 *   body.db       id + chunk number -> body chunk (64 KiB pages)
 *   next.db       next attempt + id + tag + flags (the next-attempt index)
 * Everything runs in the daemon's one thread, except the log flush of
 * the group commit, which may run in a committer thread of its own
 * (spool_log_flush: a spool opened without replication is DB_THREAD);
 * every transaction begins and ends inside one call, so no lock is ever
 * held across the loop.
 *
 * Durability: writes commit with DB_TXN_NOSYNC; spool_sync() (called once
 * per loop iteration from ev_prepare) flushes the log with one fsync, or
 * spool_log_flush() in the committer thread, then spool_sync_done() back
 * on the loop.  Only after that flush returned 0 may a 250 be sent for
 * messages committed before it began (group commit).
 *
 * The schedule (schedule.c) is an in-memory min-heap of (time, id) that
 * is rebuilt at start from next.db (next.c), the persistent index of
 * next attempts; it is pure (time is a parameter).
 *
 * spool/ never logs: functions return -1 and spool_error() says why.
 * Ownership: spool_envelope_get() returns an envelope the caller frees
 * with spool_envelope_free(); strings inside it belong to the envelope.
 */
#ifndef BACKMX_SPOOL_H
#define BACKMX_SPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define SPOOL_ID_LEN 12         /* hex digits; ids sort by creation */
#define SPOOL_CHUNK (60 * 1024) /* body chunk size */

struct spool;

enum spool_err {
	SPOOL_OK = 0,
	SPOOL_ENOSPC,    /* disk or DB full: 452 4.3.1 */
	SPOOL_EIO,       /* any other failure: 451 4.3.0 */
	SPOOL_ENOTFOUND, /* no such message */
	SPOOL_EBUSY,     /* another process holds the spool */
};

/* spool_open - open/create/recover the environment in dir */
struct spool *spool_open(const char *dir, char *err, size_t errlen);

/* sizes for spool_open_opts(); 0 = the default */
struct spool_lsn {
	uint32_t file, offset; /* a BDB log sequence number */
};

/*
 * spool_repl_send_fn - the transport of a replicated spool (repl.c):
 * carry one BDB replication message (control, rec) of the spool to the
 * other site; lsn is the record's LSN or NULL, flags SPOOL_REPL_*.  It
 * must not call back into the spool; a message it cannot carry is
 * dropped (return -1): BDB asks again for what the other site missed.
 */
typedef int (*spool_repl_send_fn)(void *arg, const void *control, size_t clen,
                                  const void *rec, size_t rlen,
                                  const struct spool_lsn *lsn, uint32_t flags);
#define SPOOL_REPL_PERMANENT 0x04 /* DB_REP_PERMANENT: a commit */

enum spool_repl_role {
	SPOOL_REPL_NONE = 0, /* not replicated */
	SPOOL_REPL_MASTER,   /* our own spool: we write, the peer copies */
	SPOOL_REPL_CLIENT,   /* the peer's spool: read-only replica, no
	                        database handles until promoted */
};

struct spool_options {
	size_t cache_bytes;  /* BDB cache, default 64 MB */
	uint32_t log_buffer; /* in-memory log buffer, default 4 MB */
	uint32_t log_file;   /* log file size, default 16 MB */
	enum spool_repl_role repl_role;
	spool_repl_send_fn repl_send;
	void *repl_arg;
	/* 1 or 2 on the two mirror nodes: ids of node 1 end in an even
	 * counter, of node 2 in an odd one, so they never collide when one
	 * node takes the other's mail over (0: any counter) */
	int id_node;
	/* 1: join an environment another live process of this daemon
	 * opened (a worker, relay/worker_child.c): no lock file, no
	 * recovery, no start-up scan, never a state file write */
	int attach;
};

/*
 * spool_open_opts - spool_open with sizes; when it returns NULL, *cls
 * (if not NULL) says why: SPOOL_EBUSY when another live process holds
 * the spool (err names its pid), SPOOL_ENOSPC, or SPOOL_EIO.
 */
struct spool *spool_open_opts(const char *dir, const struct spool_options *o,
                              enum spool_err *cls, char *err, size_t errlen);
void spool_close(struct spool *s);
/* spool_error - class and text of the last failure */
enum spool_err spool_errno(const struct spool *s);
const char *spool_error(const struct spool *s);
/* spool_sync - make every committed transaction durable (log fsync):
 * spool_sync_done(s, spool_log_flush(s)) */
int spool_sync(struct spool *s);
/* spool_threaded - 1 when spool_log_flush may run in another thread
 * while this one uses the spool (a DB_THREAD environment: no replication) */
int spool_threaded(const struct spool *s);
/* spool_log_flush - the log flush alone (one fsync): every transaction
 * committed before the call is durable when it returns 0; a BDB/errno
 * code otherwise.  Touches nothing but the environment: the one call
 * allowed from another thread (spool_threaded).  No error text: pass the
 * result to spool_sync_done on the spool's own thread. */
int spool_log_flush(struct spool *s);
/* spool_sync_done - what follows a log flush that returned ret, on the
 * spool's thread: the error (-1, spool_error), or 0 with the state file
 * (at most once a second) and a recount after an earlier failure */
int spool_sync_done(struct spool *s, int ret);
/* spool_checkpoint - checkpoint and remove unneeded logs (timer) */
int spool_checkpoint(struct spool *s);
/*
 * Health.  spool_set_logger - where BDB's own error (prio 0) and
 * informational (prio 1) messages go; NULL = nowhere.  spool_damage - a
 * one-line report when recovery at open found the transaction log
 * damaged or truncated (acknowledged mail may be lost), kept across
 * restarts until spool_damage_ack(); NULL when there is none.
 */
#define SPOOL_LOG_ERR 0
#define SPOOL_LOG_INFO 1
void spool_set_logger(void (*fn)(int prio, const char *msg));
const char *spool_damage(const struct spool *s);
int spool_damage_ack(struct spool *s, char *msg, size_t len);

/* spool_count - messages and body bytes in the spool (kept in memory) */
void spool_count(const struct spool *s, uint64_t *msgs, uint64_t *bytes);
/* spool_note_queued - a message of size octets another process of the
 * daemon committed (a worker): count it here too */
void spool_note_queued(struct spool *s, uint64_t size);
/*
 * spool_ids_share - several processes make ids in one spool: this one
 * uses the counters offset, offset + stride, ...  (offset < stride).
 * A worker (offset > 0) starts in the second after `after` (the
 * parent's spool_ids_last), so it never meets an id the parent made
 * before the fork; the parent (offset 0) records that second as where
 * orphan chunks may start after a crash.
 */
void spool_ids_share(struct spool *s, int stride, int offset, uint32_t after);
uint32_t spool_ids_last(const struct spool *s);

/* ------------------------------------------------------------------ */
/* Replication (repl.c): BDB's base replication API, one site on each side */

/* spool_repl_start - (re)announce the role to the other site: call when
 * the transport comes up (a client then synchronises) */
int spool_repl_start(struct spool *s);
/*
 * spool_repl_process - one message from the other site.  Returns 1 when
 * permanent records up to *perm were written (a client acknowledges
 * them once spool_sync() made them durable), 0 when nothing to
 * acknowledge, -1 on an error (spool_error; the link should be reset).
 */
int spool_repl_process(struct spool *s, const void *control, size_t clen,
                       const void *rec, size_t rlen, struct spool_lsn *perm);
/*
 * Identities.  spool_repl_incarnation - our spool's random 64-bit id,
 * made at first use and kept in DIR/backmxd.id: a spool on a new disk
 * has a new one, so the peer knows its replica is of an older spool
 * (0 on error).  spool_repl_id_get/put - a 64-bit id in DIR/NAME (0 when
 * absent); the replica keeps the id of the spool it copies in
 * SPOOL_REPL_MASTER_FILE.
 */
#define SPOOL_REPL_ID_FILE "backmxd.id"
#define SPOOL_REPL_MASTER_FILE "backmxd.master"
uint64_t spool_repl_incarnation(struct spool *s);
uint64_t spool_repl_id_get(struct spool *s, const char *name);
int spool_repl_id_put(struct spool *s, const char *name, uint64_t id);
/* spool_repl_client_checkpoint - a replica: pages to disk, old logs
 * removed (the master's checkpoint is its own, spool_checkpoint) */
int spool_repl_client_checkpoint(struct spool *s);
/* spool_repl_client_close - a replica closed (flushed and checkpointed
 * when it can be); 1 when it was interrupted in a synchronisation with
 * its master, which restarts on the next connection */
int spool_repl_client_close(struct spool *s);
/*
 * Takeover (repl_import.c).  spool_import - copy every message of src
 * into dst, ids kept (an id dst holds already: skipped when it is the
 * same message, else a fresh id of dst); fn(arg, e, origin_id) for each
 * message imported (e as stored in dst) and fn(arg, NULL, origin_id)
 * for each skipped as imported before.  Commits without sync: the
 * caller syncs dst.  0, or -1 with dst's error set.
 * spool_import_some - the same for at most max messages of src with an
 * id after `after` (SPOOL_ID_LEN + 1 bytes, "" at first; set to the last
 * id visited); the stats are added to.  The number of messages visited
 * (0: none left), or -1 with dst's error set.
 */
struct spool_envelope;
struct spool_import_stats {
	uint64_t imported, bytes;
	uint64_t already; /* the same message was in dst (imported before) */
	uint64_t reid;    /* stored under a new id: the id was taken */
};
typedef void spool_import_fn(void *arg, const struct spool_envelope *e,
                             const char *origin_id);
int spool_import(struct spool *dst, struct spool *src, spool_import_fn *fn,
                 void *arg, struct spool_import_stats *st);
int spool_import_some(struct spool *dst, struct spool *src, char *after,
                      int max, spool_import_fn *fn, void *arg,
                      struct spool_import_stats *st);
/* spool_repl_last_perm - master: the LSN of the last commit record sent */
struct spool_lsn spool_repl_last_perm(const struct spool *s);
/* spool_lsn_cmp - <0, 0, >0 as a is before, at, after b */
int spool_lsn_cmp(const struct spool_lsn *a, const struct spool_lsn *b);
struct spool_repl_status {
	enum spool_repl_role role;
	int in_sync;           /* client: startup done (caught up once) */
	struct spool_lsn next; /* next LSN expected / to be written */
	uint64_t msgs_processed, perm_sent;
};
void spool_repl_status(struct spool *s, struct spool_repl_status *st);

/* ------------------------------------------------------------------ */
/* Envelopes (message.c) */

enum spool_rcpt_state {
	SPOOL_RCPT_PENDING = 0,
	SPOOL_RCPT_DELIVERED,
	SPOOL_RCPT_FAILED, /* bounced (or to be bounced) */
};

#define SPOOL_NOTIFY_NEVER 0x01
#define SPOOL_NOTIFY_SUCCESS 0x02
#define SPOOL_NOTIFY_FAILURE 0x04
#define SPOOL_NOTIFY_DELAY 0x08

#define SPOOL_RET_NONE 0
#define SPOOL_RET_FULL 1
#define SPOOL_RET_HDRS 2

#define SPOOL_BODY_7BIT 0
#define SPOOL_BODY_8BITMIME 1
#define SPOOL_BODY_BINARYMIME 2

struct spool_rcpt {
	char *address; /* user@domain we deliver to */
	char *orcpt;   /* "rfc822;..." or NULL */
	int notify;    /* SPOOL_NOTIFY_* or 0 when not given */
	int state;     /* enum spool_rcpt_state */
	int attempts;
	int64_t next_attempt; /* unix time */
	char *last_error;     /* "4.4.1 connection refused" or NULL */
	char *route;          /* "host:port" static route chosen at accept
	                         (percent hack) or NULL = by domain */
	int step;             /* retry steps taken: failed attempts made at
	                         their scheduled time (a flush's do not
	                         count), the index into the retry list */
	int flags;            /* SPOOL_RCPT_F_* */
};

/* the last deferral was no reply of the host to this recipient (no
 * connection, DNS, a suspended destination): a recovered destination
 * makes it due at once */
#define SPOOL_RCPT_F_CONN 0x01
/* failed, but its DSN could not be queued yet: the message stays */
#define SPOOL_RCPT_F_BOUNCE 0x02
#define SPOOL_RCPT_F_ALL 0x03

struct spool_envelope {
	char id[SPOOL_ID_LEN + 1];
	int64_t arrival;
	uint64_t size; /* body octets as stored */
	char *sender;  /* "" for <> */
	int body;      /* SPOOL_BODY_* */
	int smtputf8;
	int ret;           /* SPOOL_RET_* */
	char *envid;       /* xtext as received, or NULL */
	char *client_addr; /* "192.0.2.1" */
	char *client_helo;
	int held;
	int is_bounce;    /* generated DSN: never bounce it */
	int delay_warned; /* the delayed DSN (delay_warning) went out */
	int nrcpt;
	struct spool_rcpt *rcpt;
};

/*
 * spool_envelope_encode - the envelopes.db record of e: a malloc'd
 * buffer the caller frees, *len set; NULL when e cannot be stored
 * (a string longer than SPOOL_STR_MAX or holding a NUL, bad fields).
 * spool_envelope_decode - parse a record; NULL for anything malformed
 * (bad magic/version, truncated, trailing bytes, out-of-range field);
 * the caller frees the result with spool_envelope_free().  Exported for
 * the fuzz target and the tests.
 */
#define SPOOL_STR_MAX 65536
#define SPOOL_RCPT_MAX 100000
void *spool_envelope_encode(const struct spool_envelope *e, size_t *len);
struct spool_envelope *spool_envelope_decode(const void *buf, size_t len);

/* spool_envelope_free - free e and everything in it; NULL ok */
void spool_envelope_free(struct spool_envelope *e);
/* spool_envelope_get - read one envelope; NULL + SPOOL_ENOTFOUND */
struct spool_envelope *spool_envelope_get(struct spool *s, const char *id);
/* spool_envelope_put - rewrite an envelope's state (NOSYNC commit) */
int spool_envelope_put(struct spool *s, const struct spool_envelope *e);
/* spool_message_delete - envelope and body in one transaction */
int spool_message_delete(struct spool *s, const char *id);

/*
 * spool_scan - call fn for each envelope with id > after ("" = from the
 * start), in id order, at most max of them (0 = all).  fn returns
 * non-zero to stop.  Returns the number visited or -1.  The envelope
 * passed to fn is freed after fn returns.
 */
int spool_scan(struct spool *s, const char *after, int max,
               int (*fn)(void *arg, const struct spool_envelope *e), void *arg);

/* ------------------------------------------------------------------ */
/* The next-attempt index (next.c): next.db, one entry per scheduled
 * message, kept in the transaction of its envelope, read in time order
 * at start instead of every envelope. */

#define SPOOL_NEXT_CONN 0x01 /* a pending recipient has SPOOL_RCPT_F_CONN */
#define SPOOL_NEXT_WARN                                                        \
	0x02 /* pending, no delay warning sent yet, not                        \
	        a DSN: a delay warning may be owed */

struct spool_next {
	int64_t t; /* earliest next attempt (or owed DSN) */
	char id[SPOOL_ID_LEN + 1];
	uint32_t tag;   /* spool_domain_tag of the one domain of its
	                   pending recipients, 0 when several/none */
	unsigned flags; /* SPOOL_NEXT_* */
};

/* spool_next_of - e's entry: 1 and *n, 0 when it has none (held, done) */
int spool_next_of(const struct spool_envelope *e, struct spool_next *n);
/* spool_domain_tag - FNV-1a of the lower-case domain, never 0 */
uint32_t spool_domain_tag(const char *domain);
/*
 * spool_next_scan - entries after *after (NULL: from the first) in time
 * order, at most max (0 = all); fn returns non-zero to stop.  The
 * number visited, or -1.  fn may change the spool.
 */
int spool_next_scan(struct spool *s, const struct spool_next *after, int max,
                    int (*fn)(void *arg, const struct spool_next *n),
                    void *arg);

/* ------------------------------------------------------------------ */
/* Writing a new message (message.c) */

struct spool_writer;

/*
 * spool_writer_new - start a message; assigns a fresh id (e->id is
 * filled by spool_writer_commit).  The body is appended in pieces of any
 * size; full chunks are written at once in their own transaction, so
 * memory stays bounded.  commit writes the rest and the envelope in one
 * transaction; abort (or a failed commit) removes what was written.
 * Both free w.
 */
struct spool_writer *spool_writer_new(struct spool *s);
const char *spool_writer_id(const struct spool_writer *w);
int spool_writer_append(struct spool_writer *w, const void *data, size_t len);
int spool_writer_commit(struct spool_writer *w, struct spool_envelope *e);
void spool_writer_abort(struct spool_writer *w);

/* ------------------------------------------------------------------ */
/* Reading a body (message.c) */

/*
 * spool_body_read - chunk number n of message id into *data and *len (the
 * data stays valid until the next spool call).  Returns 1 when a chunk
 * was read, 0 past the last chunk, -1 on error.
 */
int spool_body_read(struct spool *s, const char *id, uint32_t n,
                    const void **data, size_t *len);

/* ------------------------------------------------------------------ */
/* Recipient verification cache (verify.c): verify.db in the spool's
 * environment, one transactional record per key ("c:addr" for callout
 * answers, "l:addr" for LDAP answers), kept across restarts. */

#define SPOOL_VERIFY_KEY_MAX 300
#define SPOOL_VERIFY_TEXT_MAX 256

struct spool_verify_entry {
	int answer;         /* 1 valid, 0 invalid */
	int code;           /* the source's reply code (250, 550, ...) */
	int64_t time;       /* when it was asked */
	int64_t keep_until; /* removed after this */
	char text[SPOOL_VERIFY_TEXT_MAX]; /* the primary's reply text */
};

struct spool_verify;

/*
 * spool_verify_open - open (create) verify.db in s's environment, at
 * most max_entries records (0 = 100000).  spool_verify_close before
 * spool_close.  NULL with err set on failure.
 */
struct spool_verify *spool_verify_open(struct spool *s, uint64_t max_entries,
                                       char *err, size_t errlen);
void spool_verify_close(struct spool_verify *v);
/* spool_verify_get - 1 found (*e filled), 0 not cached, -1 error */
int spool_verify_get(struct spool_verify *v, const char *key,
                     struct spool_verify_entry *e);
/*
 * spool_verify_put - store e under key in its own transaction (no sync:
 * the next group commit flushes it; losing the last answers in a crash
 * costs one more callout).  Over max_entries, expired records go first,
 * then the oldest found by a bounded scan.  0 / -1.
 */
int spool_verify_put(struct spool_verify *v, const char *key,
                     const struct spool_verify_entry *e, int64_t now);
int spool_verify_del(struct spool_verify *v, const char *key);
/* spool_verify_expire - drop records past keep_until; returns how many */
int spool_verify_expire(struct spool_verify *v, int64_t now);
uint64_t spool_verify_count(const struct spool_verify *v);
/* spool_verify_error - the last error text */
const char *spool_verify_error(const struct spool_verify *v);

/* ------------------------------------------------------------------ */
/* Retry schedule (schedule.c): pure, time is a parameter */

struct schedule;

struct schedule *schedule_new(void);
void schedule_free(struct schedule *q);
/* schedule_set - (re)place id at time t; one entry per id */
int schedule_set(struct schedule *q, const char *id, int64_t t);
void schedule_remove(struct schedule *q, const char *id);
/* schedule_peek - earliest entry: 1 and *t, id copied; 0 when empty */
int schedule_peek(const struct schedule *q, int64_t *t,
                  char id[SPOOL_ID_LEN + 1]);
/* schedule_pop_due - remove and return the earliest id due at now */
int schedule_pop_due(struct schedule *q, int64_t now,
                     char id[SPOOL_ID_LEN + 1]);
size_t schedule_size(const struct schedule *q);
/* schedule_advance_all - entries later than now due at now; O(n) */
size_t schedule_advance_all(struct schedule *q, int64_t now);
/*
 * schedule_set_tag - a caller's tag on id's entry (a new entry has 0);
 * schedule_advance_tag - as advance_all for entries tagged tag, and for
 * untagged ones unknown(arg, id) accepts; returns the matches.  O(n).
 */
void schedule_set_tag(struct schedule *q, const char *id, uint32_t tag);
size_t schedule_advance_tag(struct schedule *q, int64_t now, uint32_t tag,
                            int (*unknown)(void *, const char *), void *arg);
/*
 * schedule_set_flags - the caller's flags (8 bits) on id's entry: a new
 * entry has 0, schedule_set keeps them; schedule_flags reads them (0
 * when id is not scheduled).  schedule_advance_match - as advance_tag,
 * only for entries holding every flag of need; tag 0 matches any entry
 * unknown() accepts.
 */
void schedule_set_flags(struct schedule *q, const char *id, unsigned flags);
unsigned schedule_flags(const struct schedule *q, const char *id);
size_t schedule_advance_match(struct schedule *q, int64_t now, uint32_t tag,
                              unsigned need,
                              int (*unknown)(void *, const char *), void *arg);
/* schedule_when - the time of id, or -1 when not scheduled */
int64_t schedule_when(const struct schedule *q, const char *id);

/*
 * schedule_backoff - next attempt time after `attempts` failed attempts
 * (1 = first failure): steps[attempts-1], the last step repeating, plus
 * a jitter of up to 10% drawn from jitter_seed (0 = none).
 */
int64_t schedule_backoff(const long *steps, int nsteps, int attempts,
                         int64_t now, unsigned jitter_seed);

/*
 * schedule_deferral - the next attempt after a deferral at now of an
 * attempt started at started: at its scheduled time (next_attempt <=
 * started) the next step (*step + 1, backoff from now), early (a flush,
 * ETRN, a recovered destination) the same step and time.  Clipped to
 * expires, always > now.
 */
int64_t schedule_deferral(const long *steps, int nsteps, int *step,
                          int64_t next_attempt, int64_t started, int64_t now,
                          int64_t expires, unsigned jitter_seed);

#endif
