/*
 * env.c - the Berkeley DB environment of the spool: the lock file that
 * keeps a second backmxd out, open with recovery (DB_RECOVER|DB_REGISTER,
 * so a process killed with -9 is recovered at the next open), the
 * databases (envelopes, body, the next-attempt index), group commit
 * (spool_sync), checkpoints and log removal, BDB's messages into the
 * error text.  Called by relay/main.c; message.c holds the records,
 * errors.c the error state, ids.c the queue ids.  Never logs: errors go
 * to spool_error().
 */
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "spool_private.h"

#define SPOOL_LOCKFILE "backmxd.lock"
#define SPOOL_CACHE_DEFAULT (64u * 1024 * 1024)
#define SPOOL_LOGBUF_DEFAULT (4u * 1024 * 1024)
#define SPOOL_LOGFILE_DEFAULT (16u * 1024 * 1024)
/*
 * Page locks: deleting or writing a 50 MB message touches ~900 body
 * pages in one transaction; BDB's default of 1000 locks is too tight.
 */
#define SPOOL_MAX_LOCKS 40000

static void (*spool_logger)(int prio, const char *msg);

void
spool_set_logger(void (*fn)(int prio, const char *msg))
{
	spool_logger = fn;
}

/*
 * spool_errcall - keep BDB's last message for the error text, note a
 * full disk and what recovery said, and pass it on to the log
 */
static void
spool_errcall(const DB_ENV *env, const char *pfx, const char *msg)
{
	struct spool *s = env->app_private;

	if (s == NULL)
		return;
	/*
	 * A replication master lists every file of the directory to rebuild
	 * an empty client (internal init); our own lock and state files are
	 * files (backmxd.lock, .state, .id) are not databases, which it says,
	 * harmlessly: not an error of ours.
	 */
	if (s->repl_role != SPOOL_REPL_NONE && strstr(msg, "fop_read_meta") &&
	    strstr(msg, "/backmxd.") != NULL)
		return;
	/* the same walk reads the first page of SPOOL/replica (our copy of
	 * the peer's spool, a directory) and of a SPOOL/replica-ID moved
	 * aside for a takeover: EISDIR, skipped by BDB; nothing else of
	 * ours reads a directory */
	if (s->repl_role != SPOOL_REPL_NONE &&
	    strstr(msg, strerror(EISDIR)) != NULL &&
	    (strstr(msg, "BDB0134 read:") != NULL ||
	     strstr(msg, "/replica") != NULL))
		return;
	snprintf(s->dberr, sizeof(s->dberr), "%s", msg);
	/* regions of other subsystems: spool_open_opts rebuilds them (and
	 * the open's error says it when that fails) */
	if (s->quiet || (s->opening && strstr(msg, "BDB1540") != NULL))
		return;
	if (strstr(msg, strerror(ENOSPC)) != NULL ||
	    strstr(msg, strerror(EDQUOT)) != NULL)
		s->saw_enospc = 1;
	if (s->opening && s->recover_msgs++ == 0)
		snprintf(s->recover_first, sizeof(s->recover_first), "%s", msg);
	if (spool_logger != NULL) {
		char line[600];

		snprintf(line, sizeof(line), "spool: BDB: %s", msg);
		spool_logger(SPOOL_LOG_ERR, line);
	}
}

/* spool_msgcall - BDB's informational messages (recovery progress) */
static void
spool_msgcall(const DB_ENV *env, const char *msg)
{
	char line[600];

	if (spool_logger == NULL)
		return;
	snprintf(line, sizeof(line), "spool: BDB: %s", msg);
	spool_logger(SPOOL_LOG_INFO, line);
}

/*
 * spool_lock - take the lock file.  DB_REGISTER tells live from dead
 * processes but lets a second live one join the environment; two
 * daemons on one spool would hand out the same ids, so refuse it here.
 */
static int
spool_lock(struct spool *s, const char *dir, enum spool_err *cls, char *err,
           size_t errlen)
{
	char path[4096], buf[32];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, SPOOL_LOCKFILE);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		*cls = errno == ENOSPC ? SPOOL_ENOSPC : SPOOL_EIO;
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;

		n = pread(fd, buf, sizeof(buf) - 1, 0);
		buf[n > 0 ? n : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		close(fd);
		if (e == EWOULDBLOCK) {
			snprintf(err, errlen,
			         "another backmxd is running (pid %s) on "
			         "spool %s",
			         buf[0] ? buf : "unknown", dir);
			*cls = SPOOL_EBUSY;
		} else {
			snprintf(err, errlen, "lock %s: %s", path, strerror(e));
			*cls = SPOOL_EIO;
		}
		return -1;
	}
	n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, n, 0) != n) {
		/* only the "pid N" hint is lost; the lock holds */
	}
	s->lockfd = fd;
	return 0;
}

/* spool_db_open - one btree database, created in its own transaction */
static int
spool_db_open(struct spool *s, DB **dbp, const char *file, uint32_t pagesize,
              char *err, size_t errlen)
{
	DB *db;
	int ret;

	if ((ret = db_create(&db, s->env, 0)) != 0)
		goto fail;
	if (pagesize != 0 && (ret = db->set_pagesize(db, pagesize)) != 0) {
		db->close(db, 0);
		goto fail;
	}
	ret = db->open(db, NULL, file, NULL, DB_BTREE,
	               DB_CREATE | DB_AUTO_COMMIT, 0600);
	if (ret != 0) {
		db->close(db, 0);
		goto fail;
	}
	*dbp = db;
	return 0;
fail:
	snprintf(err, errlen, "%s: %s%s%s", file, db_strerror(ret),
	         s->dberr[0] ? ": " : "", s->dberr);
	return -1;
}

/*
 * spool_region_mapped - how far into the region file st BDB has mapped
 * it (BDB maps each region at its maximum size and grows the file into
 * the mapping lazily), from /proc/self/maps; 0 when unknown.
 */
static off_t
spool_region_mapped(const struct stat *st)
{
	char line[4096];
	unsigned long long lo, hi, off, ino;
	unsigned maj, min;
	off_t end = 0;
	FILE *fp;

	if ((fp = fopen("/proc/self/maps", "re")) == NULL)
		return 0;
	while (fgets(line, sizeof(line), fp) != NULL) {
		if (sscanf(line, "%llx-%llx %*s %llx %x:%x %llu", &lo, &hi,
		           &off, &maj, &min, &ino) != 6)
			continue;
		if (ino != (unsigned long long)st->st_ino ||
		    maj != major(st->st_dev) || min != minor(st->st_dev))
			continue;
		if ((off_t)(off + (hi - lo)) > end)
			end = (off_t)(off + (hi - lo));
	}
	fclose(fp);
	return end;
}

/*
 * spool_region_prealloc - make the mmap()ed region files fully backed
 * by disk blocks.  BDB creates them sparse and grows the cache region
 * lazily; touching a hole when the disk is full is SIGBUS, not ENOSPC.
 * DB_REGION_INIT writes the initial regions out.  The region files after
 * the environment's own (__db.001) are fallocated up to the end of their
 * mappings (BDB maps a region at its maximum size and grows the file
 * into it), which is where the cache region would grow to: 1.3 s of
 * CPU less per start than filling it.  Without /proc, the cache is
 * filled with a throw-away in-memory database so it reaches its maximum,
 * and the files are fallocated at the size that leaves them.  Afterwards a full
 * disk can only make write(2)s fail, which BDB reports as ENOSPC.
 */
static int
spool_region_prealloc(struct spool *s, size_t cache, char *err, size_t errlen)
{
	static char page[4096];
	char path[4096];
	DB *tmp;
	DBT key, data;
	uint64_t i, n;
	struct stat st;
	int ret, fd, r;

	off_t mapped;

	snprintf(path, sizeof(path), "%s/__db.001", s->dir);
	if (stat(path, &st) == 0 && spool_region_mapped(&st) > 0)
		goto allocate;
	s->quiet = 1; /* the cache refusing more is the point */
	if ((ret = db_create(&tmp, s->env, 0)) != 0)
		goto fail;
	if ((ret = tmp->set_flags(tmp, DB_TXN_NOT_DURABLE)) != 0 ||
	    (ret = tmp->open(tmp, NULL, NULL, NULL, DB_BTREE, DB_CREATE, 0)) !=
	        0) {
		tmp->close(tmp, 0);
		goto fail;
	}
	/* until the cache refuses: at most twice its size */
	n = 2 * (uint64_t)cache / sizeof(page) + 64;
	for (i = 0; i < n; i++) {
		memset(&key, 0, sizeof(key));
		memset(&data, 0, sizeof(data));
		key.data = &i;
		key.size = sizeof(i);
		data.data = page;
		data.size = sizeof(page);
		if (tmp->put(tmp, NULL, &key, &data, 0) != 0)
			break;
	}
	tmp->close(tmp, DB_NOSYNC);
	s->quiet = 0;
	s->dberr[0] = '\0';
allocate:
	for (i = 1; i < 1000; i++) {
		snprintf(path, sizeof(path), "%s/__db.%03u", s->dir,
		         (unsigned)i);
		if ((fd = open(path, O_RDWR | O_CLOEXEC)) < 0)
			break;
		if (fstat(fd, &st) == 0) {
			/* __db.001, the environment's own region, as it is */
			mapped = i > 1 ? spool_region_mapped(&st) : 0;
			r = posix_fallocate(
			    fd, 0, mapped > st.st_size ? mapped : st.st_size);
		} else
			r = errno;
		close(fd);
		if (r != 0) {
			snprintf(err, errlen, "allocating %s: %s", path,
			         strerror(r));
			return -1;
		}
	}
	return 0;
fail:
	s->quiet = 0;
	snprintf(err, errlen, "allocating the cache: %s", db_strerror(ret));
	return -1;
}

struct spool *
spool_open(const char *dir, char *err, size_t errlen)
{
	return spool_open_opts(dir, NULL, NULL, err, errlen);
}

/* spool_open_opts - spool_open with sizes and the failure class */
struct spool *
spool_open_opts(const char *dir, const struct spool_options *o,
                enum spool_err *clsp, char *err, size_t errlen)
{
	struct spool *s;
	struct stat st;
	enum spool_err cls = SPOOL_EIO, dummy;
	size_t cache = SPOOL_CACHE_DEFAULT;
	uint32_t logbuf = SPOOL_LOGBUF_DEFAULT, logfile = SPOOL_LOGFILE_DEFAULT;
	int ret, rebuilt = 0;

	if (clsp == NULL)
		clsp = &dummy;
	if (o != NULL) {
		if (o->cache_bytes)
			cache = o->cache_bytes;
		if (o->log_buffer)
			logbuf = o->log_buffer;
		if (o->log_file)
			logfile = o->log_file;
	}
	/* BDB wants a log file of at least 4 log buffers */
	if (logfile < 4 * logbuf)
		logfile = 4 * logbuf;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "mkdir %s: %s", dir, strerror(errno));
		*clsp = errno == ENOSPC ? SPOOL_ENOSPC : SPOOL_EIO;
		return NULL;
	}
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s: not a directory", dir);
		*clsp = SPOOL_EIO;
		return NULL;
	}
	/* before BDB maps a region: a region file the disk cannot back is
	 * a SIGBUS at first touch, and a failed recovery removes them */
	if ((o == NULL || !o->attach) &&
	    spool_space_check(dir, cache, logbuf, err, errlen) < 0) {
		*clsp = SPOOL_ENOSPC;
		return NULL;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (s->dir = strdup(dir)) == NULL) {
		free(s);
		snprintf(err, errlen, "out of memory");
		*clsp = SPOOL_EIO;
		return NULL;
	}
	s->lockfd = -1;
	s->attach = o != NULL && o->attach;
	if (!s->attach && spool_lock(s, dir, clsp, err, errlen) < 0) {
		free(s->dir);
		free(s);
		return NULL;
	}

	/* descriptors BDB can use at EMFILE (fdreserve.c) */
	spool_fd_reserve_init(spool_logger);
again:
	if ((ret = db_env_create(&s->env, 0)) != 0) {
		snprintf(err, errlen, "db_env_create: %s", db_strerror(ret));
		s->env = NULL;
		goto fail;
	}
	s->id_node = o != NULL ? o->id_node : 0;
	s->env->app_private = s;
	s->env->set_errcall(s->env, spool_errcall);
	s->env->set_msgcall(s->env, spool_msgcall);
	if (!s->attach)
		spool_state_read(s);
	if ((ret = s->env->set_cachesize(s->env, (uint32_t)(cache >> 30),
	                                 (uint32_t)(cache & ((1u << 30) - 1)),
	                                 1)) != 0 ||
	    (ret = s->env->set_lk_detect(s->env, DB_LOCK_DEFAULT)) != 0 ||
	    (ret = s->env->set_lk_max_locks(s->env, SPOOL_MAX_LOCKS)) != 0 ||
	    (ret = s->env->set_lk_max_objects(s->env, SPOOL_MAX_LOCKS)) != 0 ||
	    (ret = s->env->set_lg_bsize(s->env, logbuf)) != 0 ||
	    (ret = s->env->set_lg_max(s->env, logfile)) != 0 ||
	    (ret = s->env->set_flags(s->env, DB_TXN_NOSYNC, 1)) != 0 ||
	    (ret = s->env->set_flags(s->env, DB_REGION_INIT, 1)) != 0) {
		snprintf(err, errlen, "configuring the environment: %s",
		         db_strerror(ret));
		goto fail;
	}
	if (o != NULL && o->repl_role != SPOOL_REPL_NONE &&
	    spool_repl_configure(s, o, err, errlen) < 0)
		goto fail;
	/*
	 * DB_REGISTER + DB_RECOVER: recovery runs when a process that had
	 * the environment open died without closing it (kill -9, crash),
	 * so no manual db_recover is ever needed.  A worker (attach) joins
	 * the environment the parent recovered: DB_REGISTER without
	 * DB_RECOVER, so a dead process found now is DB_RUNRECOVERY for
	 * it, never a recovery under the feet of the live parent.
	 */
	s->opening = 1;
	ret = s->env->open(s->env, dir,
	                   DB_CREATE | DB_INIT_TXN | DB_INIT_LOCK |
	                       DB_INIT_LOG | DB_INIT_MPOOL |
	                       (s->attach ? 0 : DB_RECOVER) | DB_REGISTER |
	                       /* a replicated spool stays on one thread:
	                        * the transport callbacks are the loop's */
	                       (s->repl_role ? DB_INIT_REP : DB_THREAD),
	                   0600);
	s->opening = 0;
	/* a spool that got or lost a `peer`: its regions were made with
	 * other subsystems (repl.c); rebuilt, then opened again */
	if (ret == EINVAL && !s->attach && !rebuilt &&
	    strstr(s->dberr, "BDB1540") != NULL) {
		s->env->close(s->env, 0);
		s->env = NULL;
		rebuilt = 1;
		if (spool_repl_regions(dir, err, errlen) < 0)
			goto fail;
		if (spool_logger != NULL)
			spool_logger(
			    SPOOL_LOG_INFO,
			    "spool: its environment was made with "
			    "replication on and is opened with it off, or "
			    "the other way (`peer` added or removed): "
			    "recovered and its regions made again");
		goto again;
	}
	if (ret != 0) {
		/* recovery that ran out of space ends in DB_RUNRECOVERY;
		 * the cause is the disk, so say that first */
		if (ret == ENOSPC || ret == EDQUOT || s->saw_enospc ||
		    strstr(s->dberr, strerror(ENOSPC))) {
			cls = SPOOL_ENOSPC;
			snprintf(
			    err, errlen,
			    "disk full: opening the environment in %s "
			    "failed for lack of space (%s%s%s): free space "
			    "and start again",
			    dir, db_strerror(ret), s->dberr[0] ? ": " : "",
			    s->dberr);
		} else
			snprintf(err, errlen, "opening the environment: %s%s%s",
			         db_strerror(ret), s->dberr[0] ? ": " : "",
			         s->dberr);
		goto fail;
	}
	if (s->attach) {
		/* the parent opened, scanned and checked it: only handles */
		if (spool_db_open(s, &s->envelopes, "envelopes.db", 0, err,
		                  errlen) < 0 ||
		    spool_db_open(s, &s->body, "body.db", 65536, err, errlen) <
		        0 ||
		    spool_next_open(s, err, errlen) < 0)
			goto fail;
		s->err = SPOOL_OK;
		return s; /* open_ok stays 0: no state file writes */
	}
	if (spool_region_prealloc(s, cache, err, errlen) < 0) {
		cls = strstr(err, strerror(ENOSPC)) ? SPOOL_ENOSPC : SPOOL_EIO;
		if (cls == SPOOL_ENOSPC) {
			char what[512];

			snprintf(what, sizeof(what), "%s", err);
			snprintf(
			    err, errlen,
			    "disk full: %s: lower spool_cache or free space",
			    what);
		}
		goto fail;
	}
	/* replicated: the role before any database is touched; a client
	 * (the peer's spool) has no handles until it is promoted */
	if (s->repl_role != SPOOL_REPL_NONE &&
	    spool_repl_begin(s, err, errlen) < 0)
		goto fail;
	if (s->repl_role == SPOOL_REPL_CLIENT) {
		s->open_ok = 1;
		s->err = SPOOL_OK;
		return s;
	}
	if (spool_log_check(s) < 0) {
		snprintf(err, errlen, "%s", s->errbuf);
		cls = s->err;
		goto fail;
	}
	if (spool_db_open(s, &s->envelopes, "envelopes.db", 0, err, errlen) <
	        0 ||
	    spool_db_open(s, &s->body, "body.db", 65536, err, errlen) < 0)
		goto fail;
	if (spool_open_scan(s, err, errlen) < 0) {
		cls = s->err;
		goto fail;
	}
	if (spool_next_open(s, err, errlen) < 0)
		goto fail;
	spool_damage_check(s);
	s->open_ok = 1;
	/*
	 * Before anything changes: the state file no longer says clean
	 * and names where orphans may start, on disk, so a crash from now
	 * on is never taken for a clean close (startup.c).
	 */
	if (spool_state_write(s, 1) < 0) {
		snprintf(err, errlen, "writing the state file in %s: %s", dir,
		         strerror(errno));
		cls = errno == ENOSPC ? SPOOL_ENOSPC : SPOOL_EIO;
		goto fail;
	}
	/* start from a fresh checkpoint after recovery; failure is harmless */
	spool_checkpoint(s);
	s->err = SPOOL_OK;
	return s;

fail:
	*clsp = cls;
	spool_close(s);
	return NULL;
}

void
spool_close(struct spool *s)
{
	if (s == NULL)
		return;
	if (s->open_ok) {
		s->closing = 1;
		spool_state_write(s, 1);
	}
	if (s->next != NULL)
		s->next->close(s->next, 0);
	if (s->body != NULL)
		s->body->close(s->body, 0);
	if (s->envelopes != NULL)
		s->envelopes->close(s->envelopes, 0);
	if (s->env != NULL)
		s->env->close(s->env, 0);
	if (s->lockfd >= 0)
		close(s->lockfd);
	free(s->rbuf);
	free(s->dir);
	free(s);
}

/*
 * spool_sync - group commit: one log flush (one fsync) makes every
 * transaction committed with DB_TXN_NOSYNC before it durable.
 */
int
spool_sync(struct spool *s)
{
	return spool_sync_done(s, spool_log_flush(s));
}

int
spool_threaded(const struct spool *s)
{
	return s->repl_role == SPOOL_REPL_NONE;
}

int
spool_log_flush(struct spool *s)
{
	return s->env->log_flush(s->env, NULL);
}

int
spool_sync_done(struct spool *s, int ret)
{
	time_t now;

	if (ret != 0) {
		/* the count kept in memory may now be wrong (stats); the
		 * next successful sync counts from the database */
		s->recount = 1;
		return spool_fail(s, ret, "flushing the log");
	}
	if (s->recount && spool_recount(s) == 0)
		s->recount = 0;
	/* the witness of how far the log reached (recover.c), at most once
	 * a second: cheap, and a failure only weakens the damage check */
	now = time(NULL);
	if (s->open_ok && now != s->st_when) {
		s->st_when = now;
		spool_state_write(s, 0);
	}
	return 0;
}

/*
 * spool_checkpoint - checkpoint, then remove the log files recovery no
 * longer needs.  We remove them here with log_archive(DB_ARCH_REMOVE)
 * rather than DB_LOG_AUTO_REMOVE: removal then happens on the
 * checkpoint timer, never inside a commit on the SMTP path, and only
 * right after the checkpoint that makes it safe.  Either way
 * catastrophic recovery from logs is given up; the spool is a queue,
 * not an archive.
 */
int
spool_checkpoint(struct spool *s)
{
	int ret;

	spool_fd_reserve_fill(); /* after a log file BDB keeps open */
	if ((ret = s->env->txn_checkpoint(s->env, 0, 0, 0)) != 0)
		return spool_fail(s, ret, "checkpoint");
	if ((ret = s->env->log_archive(s->env, NULL, DB_ARCH_REMOVE)) != 0)
		return spool_fail(s, ret, "removing old logs");
	/* the checkpoint flushed the log: record how far it reaches */
	if (s->open_ok)
		spool_state_write(s, 0);
	return 0;
}

/* spool_count - messages and body bytes in the spool (kept in memory) */
void
spool_count(const struct spool *s, uint64_t *msgs, uint64_t *bytes)
{
	if (msgs != NULL)
		*msgs = s->msgs;
	if (bytes != NULL)
		*bytes = s->bytes;
}

void
spool_note_queued(struct spool *s, uint64_t size)
{
	s->msgs++;
	s->bytes += size;
}

void
spool_ids_share(struct spool *s, int stride, int offset, uint32_t after)
{
	s->id_stride = stride;
	s->id_offset = offset;
	if (offset > 0) {
		/* the next id borrows the second after `after` */
		s->id_secs = after;
		s->id_count = 0x10000;
	} else if (stride > 1) {
		/* the smallest second a worker's id can have */
		uint32_t from = s->id_secs + 1, now = (uint32_t)time(NULL);

		snprintf(s->orphan_shared, sizeof(s->orphan_shared), "%08x0000",
		         (unsigned)(now > from ? now : from));
	}
}

uint32_t
spool_ids_last(const struct spool *s)
{
	return s->id_secs;
}
