/*
 * repl.c - Berkeley DB replication of a spool with the base API
 * (DB_ENV->rep_set_transport, rep_start, rep_process_message): no
 * Replication Manager, no threads.  The caller (relay/mirror.c) owns the
 * transport: BDB hands us each message in the send callback, we hand it
 * to the caller's spool_repl_send_fn; messages from the other site come
 * back through spool_repl_process().
 *
 * Each replicated spool is a group of two sites: the node that owns it
 * (master) and the other node (client).  Site ids are local labels: we
 * are always 1, the other site 2.  No elections are ever held (a node
 * never becomes master of the peer's spool by itself; takeover is an
 * explicit decision of relay/mirror.c).
 *
 * Acknowledgements are ours, not BDB's: the send callback notes the LSN
 * of every permanent (commit) record; the client, when
 * rep_process_message says DB_REP_ISPERM, flushes its log and sends that
 * LSN back; the master compares it with the LSN a message committed at.
 * Called only from the loop's thread; never logs.
 */
#include <sys/random.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spool_private.h"

#define REPL_SELF 1
#define REPL_OTHER 2
/* a reply to one request stays under this, so it fits one link frame */
#define REPL_LIMIT (1u * 1024 * 1024)

int
spool_lsn_cmp(const struct spool_lsn *a, const struct spool_lsn *b)
{
	if (a->file != b->file)
		return a->file < b->file ? -1 : 1;
	if (a->offset != b->offset)
		return a->offset < b->offset ? -1 : 1;
	return 0;
}

/* repl_send - BDB's send callback: to the caller's transport */
static int
repl_send(DB_ENV *env, const DBT *control, const DBT *rec, const DB_LSN *lsnp,
          int envid, u_int32_t flags)
{
	struct spool *s = env->app_private;
	struct spool_lsn lsn, *lp = NULL;

	if (s == NULL || s->repl_send == NULL)
		return 0;
	if (lsnp != NULL) {
		lsn.file = lsnp->file;
		lsn.offset = lsnp->offset;
		lp = &lsn;
		if ((flags & DB_REP_PERMANENT) &&
		    s->repl_role == SPOOL_REPL_MASTER &&
		    spool_lsn_cmp(&lsn, &s->repl_last_perm) > 0) {
			s->repl_last_perm = lsn;
			s->repl_perm_sent++;
		}
	}
	/*
	 * 0 even when the transport dropped it: a non-zero return for a
	 * permanent record only makes BDB fsync the log right here, inside
	 * the commit; our durability is the group commit (spool_sync), and
	 * the peer's copy is what the acknowledgement says.
	 */
	s->repl_send(s->repl_arg, control->data, control->size,
	             rec != NULL ? rec->data : NULL,
	             rec != NULL ? rec->size : 0, lp,
	             flags & DB_REP_PERMANENT ? SPOOL_REPL_PERMANENT : 0);
	return 0;
}

/* repl_event - BDB's events: only the ones that change our state */
static void
repl_event(DB_ENV *env, u_int32_t event, void *info)
{
	struct spool *s = env->app_private;

	if (s == NULL)
		return;
	if (event == DB_EVENT_REP_STARTUPDONE)
		s->repl_startup_done = 1;
}

/* spool_repl_configure - before DB_ENV->open: transport and limits */
int
spool_repl_configure(struct spool *s, const struct spool_options *o, char *err,
                     size_t errlen)
{
	DB_ENV *env = s->env;
	int ret;

	s->repl_role = o->repl_role;
	s->repl_send = o->repl_send;
	s->repl_arg = o->repl_arg;
	if ((ret = env->rep_set_transport(env, REPL_SELF, repl_send)) != 0 ||
	    (ret = env->set_event_notify(env, repl_event)) != 0 ||
	    (ret = env->rep_set_limit(env, 0, REPL_LIMIT)) != 0 ||
	    /* an empty or far-behind client is rebuilt from the master's
	     * pages (internal init) instead of failing to join */
	    (ret = env->rep_set_config(env, DB_REP_CONF_AUTOINIT, 1)) != 0 ||
	    (ret = env->rep_set_config(env, DB_REP_CONF_BULK, 0)) != 0 ||
	    (ret = env->rep_set_priority(
	         env, o->repl_role == SPOOL_REPL_MASTER ? 100 : 0)) != 0 ||
	    (ret = env->rep_set_nsites(env, 2)) != 0 ||
	    /* the master would wait 30 s (the default) inside every
	     * txn_checkpoint for clients to checkpoint first: the loop
	     * must never block, and a client's checkpoint is its own */
	    (ret = env->rep_set_timeout(env, DB_REP_CHECKPOINT_DELAY, 0)) !=
	        0) {
		snprintf(err, errlen, "configuring replication: %s",
		         db_strerror(ret));
		return -1;
	}
	return 0;
}

/* spool_repl_begin - after DB_ENV->open: take the role */
int
spool_repl_begin(struct spool *s, char *err, size_t errlen)
{
	if (spool_repl_start(s) < 0) {
		snprintf(err, errlen, "%s", s->errbuf);
		return -1;
	}
	return 0;
}

int
spool_repl_start(struct spool *s)
{
	int ret;

	if (s->repl_role == SPOOL_REPL_NONE)
		return 0;
	ret = s->env->rep_start(
	    s->env, NULL,
	    s->repl_role == SPOOL_REPL_MASTER ? DB_REP_MASTER : DB_REP_CLIENT);
	if (ret != 0)
		return spool_fail(s, ret, "starting replication as %s",
		                  s->repl_role == SPOOL_REPL_MASTER ? "master"
		                                                    : "client");
	return 0;
}

int
spool_repl_process(struct spool *s, const void *control, size_t clen,
                   const void *rec, size_t rlen, struct spool_lsn *perm)
{
	DBT c, r;
	DB_LSN lsn;
	int ret;

	if (s->repl_role == SPOOL_REPL_NONE)
		return spool_fail_class(s, SPOOL_EIO, "spool not replicated");
	memset(&c, 0, sizeof(c));
	memset(&r, 0, sizeof(r));
	c.data = (void *)control;
	c.size = (u_int32_t)clen;
	r.data = (void *)rec;
	r.size = (u_int32_t)rlen;
	memset(&lsn, 0, sizeof(lsn));
	s->repl_msgs++;
	ret = s->env->rep_process_message(s->env, &c, &r, REPL_OTHER, &lsn);
	switch (ret) {
	case DB_REP_ISPERM:
		perm->file = lsn.file;
		perm->offset = lsn.offset;
		return 1;
	case 0:
	case DB_REP_NOTPERM:      /* written, not yet permanent: later */
	case DB_REP_IGNORE:       /* old or duplicate */
	case DB_REP_NEWSITE:      /* the client announced itself */
	case DB_REP_HOLDELECTION: /* we never elect */
		return 0;
	case DB_REP_DUPMASTER:
		return spool_fail_class(s, SPOOL_EIO,
		                        "replication: the other site is master "
		                        "of this spool too");
	case DB_REP_JOIN_FAILURE:
		return spool_fail_class(s, SPOOL_EIO,
		                        "replication: cannot synchronise with "
		                        "the master");
	default:
		return spool_fail(s, ret, "processing a replication message");
	}
}

struct spool_lsn
spool_repl_last_perm(const struct spool *s)
{
	return s->repl_last_perm;
}

void
spool_repl_status(struct spool *s, struct spool_repl_status *st)
{
	DB_REP_STAT *rs = NULL;

	memset(st, 0, sizeof(*st));
	st->role = s->repl_role;
	st->msgs_processed = s->repl_msgs;
	st->perm_sent = s->repl_perm_sent;
	st->in_sync = s->repl_role == SPOOL_REPL_MASTER || s->repl_startup_done;
	if (s->repl_role != SPOOL_REPL_NONE &&
	    s->env->rep_stat(s->env, &rs, 0) == 0 && rs != NULL) {
		st->next.file = rs->st_next_lsn.file;
		st->next.offset = rs->st_next_lsn.offset;
		if (s->repl_role == SPOOL_REPL_CLIENT &&
		    rs->st_startup_complete)
			st->in_sync = 1;
		free(rs);
	}
}

/* repl_id_path - DIR/NAME */
static void
repl_id_path(const struct spool *s, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", s->dir, name);
}

uint64_t
spool_repl_id_get(struct spool *s, const char *name)
{
	char path[4096], buf[32];
	unsigned long long v;
	ssize_t n;
	int fd;

	repl_id_path(s, name, path, sizeof(path));
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	if (sscanf(buf, "%llx", &v) != 1)
		return 0;
	return (uint64_t)v;
}

int
spool_repl_id_put(struct spool *s, const char *name, uint64_t id)
{
	char path[4096], tmp[4200], buf[32];
	int fd, n;

	repl_id_path(s, name, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	n = snprintf(buf, sizeof(buf), "%016llx\n", (unsigned long long)id);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) <
	    0)
		return spool_fail(s, errno, "%s", tmp);
	if (write(fd, buf, n) != n || fsync(fd) < 0) {
		int e = errno;

		close(fd);
		unlink(tmp);
		return spool_fail(s, e, "writing %s", tmp);
	}
	close(fd);
	if (rename(tmp, path) < 0)
		return spool_fail(s, errno, "renaming %s", tmp);
	return 0;
}

uint64_t
spool_repl_incarnation(struct spool *s)
{
	uint64_t id = spool_repl_id_get(s, SPOOL_REPL_ID_FILE);

	while (id == 0) {
		if (getrandom(&id, sizeof(id), 0) != sizeof(id))
			return 0;
	}
	if (spool_repl_id_get(s, SPOOL_REPL_ID_FILE) != id &&
	    spool_repl_id_put(s, SPOOL_REPL_ID_FILE, id) < 0)
		return 0;
	return id;
}

/*
 * client_nowait - a client's API calls (log_flush, checkpoint) during
 * its synchronisation with the master (a replication lockout: internal
 * init, or a sync after a gap) spin inside BDB until the sync ends,
 * which needs the messages only our loop reads: called from the loop
 * they never return (a SIGTERM then never ended the process).  With
 * DB_REP_CONF_NOWAIT they fail at once with DB_REP_LOCKOUT.  Set only
 * around our own calls, not for good: the setting lives in the shared
 * region, and a tool reading the replica (db_dump) refused so leaves
 * BDB's count of threads in the API raised, after which the next
 * lockout waits for it forever (seen in test_peer_repl).
 */
static void
client_nowait(struct spool *s, int on)
{
	s->env->rep_set_config(s->env, DB_REP_CONF_NOWAIT, on);
	/* BDB says "BDB3504 Operation locked out.  Waiting for replication
	 * lockout to complete" for each refused call: expected, not logged
	 * (the error is in s's error text; the caller says what happened
	 * once: relay/mirror.c) */
	s->quiet = on;
}

static int client_checkpoint_calls(struct spool *s, int *lockout);

/* client_checkpoint - as below; *lockout set when BDB refused the call
 * because the replica is synchronising with its master */
static int
client_checkpoint(struct spool *s, int *lockout)
{
	int ret;

	*lockout = 0;
	client_nowait(s, 1);
	ret = client_checkpoint_calls(s, lockout);
	client_nowait(s, 0);
	return ret;
}

static int
client_checkpoint_calls(struct spool *s, int *lockout)
{
	int ret;

	if ((ret = s->env->memp_sync(s->env, NULL)) != 0) {
		*lockout = ret == DB_REP_LOCKOUT;
		return spool_fail(s, ret, "replica: writing pages");
	}
	if ((ret = s->env->txn_checkpoint(s->env, 0, 0, 0)) != 0) {
		*lockout = ret == DB_REP_LOCKOUT;
		return spool_fail(s, ret, "replica: checkpoint");
	}
	if ((ret = s->env->log_archive(s->env, NULL, DB_ARCH_REMOVE)) != 0) {
		*lockout = ret == DB_REP_LOCKOUT;
		return spool_fail(s, ret, "replica: removing old logs");
	}
	return 0;
}

/*
 * spool_repl_client_checkpoint - the replica's own housekeeping: its
 * pages to disk, then the log files it no longer needs removed (without
 * this they grow with every message the peer ever wrote).  Skipped
 * while the replica has not finished its first synchronisation (BDB
 * locks its API out then; see client_nowait).
 */
int
spool_repl_client_checkpoint(struct spool *s)
{
	int lockout;

	if (s->repl_role == SPOOL_REPL_CLIENT && !s->repl_startup_done)
		return 0;
	if (client_checkpoint(s, &lockout) < 0)
		return lockout ? 0 : -1;
	return 0;
}

/*
 * spool_repl_client_close - close a replica at exit or before takeover.
 * Its log flushed and a checkpoint, unless it is in a synchronisation
 * with its master (a replication lockout: an internal init or a sync
 * after a gap).  Then the lockout is recorded in the environment's
 * region files and the next open of the directory would fail with
 * DB_REP_LOCKOUT: they are removed after the close (nothing else uses
 * them: we hold the spool's lock file until spool_close), and BDB
 * restarts the interrupted synchronisation on the next connection.
 * Returns 1 when it was interrupted so, 0 otherwise.
 */
int
spool_repl_client_close(struct spool *s)
{
	DB_ENV *env;
	char *dir;
	int lockout = 0, ret;

	if (s == NULL)
		return 0;
	client_nowait(s, 1); /* for good: it is closed next */
	if ((ret = s->env->log_flush(s->env, NULL)) != 0)
		lockout = ret == DB_REP_LOCKOUT;
	if (!lockout)
		client_checkpoint_calls(s, &lockout);
	if (!lockout) {
		s->quiet = 0; /* a failure to close is news */
		spool_close(s);
		return 0;
	}
	dir = strdup(s->dir);
	spool_close(s);
	if (dir == NULL)
		return 1;
	if (db_env_create(&env, 0) == 0)
		env->remove(env, dir, DB_FORCE); /* frees env */
	free(dir);
	return 1;
}

/*
 * spool_repl_regions - BDB refuses to join regions made with other
 * subsystems ("BDB1540 configured environment flags incompatible with
 * existing environment", even with DB_RECOVER, as DB_REGISTER joins
 * first): a node's spool made without replication could not be opened
 * once `peer` is configured, nor the other way.  The regions are only
 * the cache, locks and log buffer of the environment: recovery runs on a
 * private handle (DB_RECOVER without DB_REGISTER: the regions are
 * destroyed first, the log replayed onto the databases), the handle is
 * closed and the region files removed, so the next open makes new ones.
 * The caller holds the spool lock: no other process has it open.
 */
int
spool_repl_regions(const char *dir, char *err, size_t errlen)
{
	DB_ENV *e;
	int ret;

	if ((ret = db_env_create(&e, 0)) != 0)
		goto fail;
	e->set_cachesize(e, 0, 16u * 1024 * 1024, 1);
	if ((ret = e->open(e, dir,
	                   DB_CREATE | DB_INIT_TXN | DB_INIT_LOCK |
	                       DB_INIT_LOG | DB_INIT_MPOOL | DB_RECOVER,
	                   0600)) != 0) {
		e->close(e, 0);
		goto fail;
	}
	if ((ret = e->close(e, 0)) != 0 || (ret = db_env_create(&e, 0)) != 0)
		goto fail;
	if ((ret = e->remove(e, dir, 0)) != 0) /* frees e */
		goto fail;
	return 0;
fail:
	snprintf(err, errlen,
	         "the environment in %s was made with other subsystems "
	         "(replication on or off) and could not be rebuilt: %s",
	         dir, db_strerror(ret));
	return -1;
}
