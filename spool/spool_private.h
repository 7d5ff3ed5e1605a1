/*
 * spool_private.h - what env.c, message.c share inside spool/: the
 * struct spool, error helpers and the id generator.  Nothing outside
 * spool/ includes this file; spool.h is the public interface.
 */
#ifndef BACKMX_SPOOL_PRIVATE_H
#define BACKMX_SPOOL_PRIVATE_H

#include <db.h>

#include "spool.h"

#define SPOOL_BODY_KEYLEN (SPOOL_ID_LEN + 4) /* id + big-endian chunk */
/* next.db: be64 time (sign bit flipped) + id + be32 tag + u8 flags */
#define SPOOL_NEXT_KEYLEN (8 + SPOOL_ID_LEN + 4 + 1)

struct spool_writer;

struct spool {
	DB_ENV *env;
	DB *envelopes; /* envelopes.db: id -> record */
	DB *body;      /* body.db: id + chunk -> octets */
	DB *next;      /* next.db: the next-attempt index (next.c) */
	int lockfd;    /* flock()ed backmxd.lock */
	char *dir;

	enum spool_err err;
	char errbuf[1024];
	char dberr[256]; /* last message from BDB's errcall */

	uint32_t id_secs; /* last id handed out */
	uint32_t id_count;
	int id_node; /* spool_options.id_node: the counter's parity */
	int id_stride, id_offset; /* spool_ids_share; 0: one process */
	int attach;               /* spool_options.attach: a worker's handle */
	char orphan_shared[SPOOL_ID_LEN + 1]; /* first id workers made */

	uint64_t msgs; /* spool_count() */
	uint64_t bytes;

	/* orphan chunks (startup.c): live writers, oldest first, and the
	 * smallest id whose chunks a failed abort may have left */
	struct spool_writer *wfirst, *wlast;
	char orphan_min[SPOOL_ID_LEN + 1];

	void *rbuf; /* spool_body_read() data */
	size_t rbufcap;

	/* health (recover.c) */
	int opening;      /* inside DB_ENV->open: recovery may talk */
	int open_ok;      /* fully open: the state file may be written */
	int quiet;        /* expected BDB errors: do not log them */
	int saw_enospc;   /* a BDB message said the disk is full */
	int recover_msgs; /* BDB error messages during the open */
	char recover_first[256];
	uint32_t st_file, st_offset; /* backmxd.state: log end known on disk */
	uint64_t st_msgs;
	int st_clean; /* closed cleanly: st_msgs/st_bytes hold */
	uint64_t st_bytes;
	char st_orphans[SPOOL_ID_LEN + 1]; /* chunks from here on may be
	                                      orphans; "" all, "-" none */
	int64_t st_when;                   /* last state write by spool_sync */
	int recount;      /* a sync failed: recount at the next one */
	int closing;      /* spool_close: the state file says clean */
	char damage[768]; /* unacknowledged damage report, or "" */
	int log_short;    /* the log ends before st_file/st_offset */
	uint32_t log_file, log_offset; /* where it ends after recovery */

	/* replication (repl.c) */
	enum spool_repl_role repl_role;
	spool_repl_send_fn repl_send;
	void *repl_arg;
	struct spool_lsn repl_last_perm; /* master: last commit record sent */
	uint64_t repl_msgs, repl_perm_sent;
	int repl_startup_done;
};

/* spool_fail - classify BDB/errno code ret, set the error text; -1 */
int spool_fail(struct spool *s, int ret, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* spool_txn_retry - 1 when a transaction that ended in ret (already
 * aborted) is to be run again: DB_LOCK_DEADLOCK (another process of the
 * daemon held a page it needed: `workers`), at most SPOOL_TXN_TRIES
 * times in all; *tries counts them */
#define SPOOL_TXN_TRIES 16
int spool_txn_retry(int ret, int *tries);
/* spool_fail_class - as spool_fail with an explicit class */
int spool_fail_class(struct spool *s, enum spool_err cls, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* spool_id_next - a fresh id, later than every id handed out before */
void spool_id_next(struct spool *s, char id[SPOOL_ID_LEN + 1]);
/* spool_id_valid - 12 lowercase hex digits */
int spool_id_valid(const char *id);
/* spool_body_key - body.db key of chunk n of id into key */
void spool_body_key(unsigned char key[SPOOL_BODY_KEYLEN], const char *id,
                    uint32_t n);
/* fdreserve.c: descriptors kept for BDB and the state file at EMFILE */
void spool_fd_reserve_init(void (*logger)(int prio, const char *msg));
void spool_fd_reserve_fill(void);
int spool_fd_open(const char *path, int flags, ...);
int spool_fd_close(int fd);
unsigned spool_fd_reserve_held(void);
/* recover.c: free space before open, the state file, damage reports */
int spool_space_check(const char *dir, size_t cache, uint32_t logbuf, char *err,
                      size_t errlen);
int spool_state_read(struct spool *s);
int spool_state_write(struct spool *s, int durable);
int spool_log_check(struct spool *s);
void spool_damage_check(struct spool *s);
/* spool_recount - messages and bytes from the database (startup.c) */
int spool_recount(struct spool *s);
/* repl.c: before DB_ENV->open (transport, limits) and after it */
/* spool_repl_regions - the environment in dir could not be joined with
 * other subsystems (a spool that gets or loses a `peer`): recovered on
 * a private handle and its region files removed (spool lock held) */
int spool_repl_regions(const char *dir, char *err, size_t errlen);
int spool_repl_configure(struct spool *s, const struct spool_options *o,
                         char *err, size_t errlen);
int spool_repl_begin(struct spool *s, char *err, size_t errlen);
/* spool_open_scan - count messages, drop orphan chunks (startup.c) */
int spool_open_scan(struct spool *s, char *err, size_t errlen);
/* spool_orphans_from - the state file's orphans_from now (startup.c) */
void spool_orphans_from(const struct spool *s, int closing,
                        char id[SPOOL_ID_LEN + 1]);
/* spool_txn_body_remove - the chunks of id, in a transaction (BDB code) */
int spool_txn_body_remove(struct spool *s, const char *id);
/* next.c: the next-attempt index */
int spool_next_open(struct spool *s, char *err, size_t errlen);
int spool_next_update(struct spool *s, DB_TXN *txn,
                      const struct spool_envelope *old,
                      const struct spool_envelope *new);

#endif
