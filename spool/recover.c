/*
 * recover.c - what the spool can tell the operator about its own health
 * at open: is there room for the environment (statvfs before BDB maps
 * anything: a region file that cannot be backed by disk blocks is a
 * SIGBUS, not an error), and did recovery find the transaction log
 * damaged or truncated (mail acknowledged before the damage is lost, and
 * BDB's recovery says nothing about it).
 *
 * The second needs a witness outside the log: backmxd.state in the spool
 * directory holds the end of the log known to be on disk (an LSN) and
 * the message count, rewritten at every checkpoint and at close.  It
 * also carries what startup.c needs to open without reading every
 * envelope: "clean MSGS BYTES" after a clean close, "orphans_from ID".  When
 * recovery leaves the log ending before that LSN, records we had on disk
 * are gone: that is reported (spool_damage) and kept in the state file
 * until the operator acknowledges it (spool_damage_ack).
 */
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spool_private.h"

#define SPOOL_STATEFILE "backmxd.state"
/* measured (BDB 5.3, our lock limits): regions take cache * 1.25 + ~7 MB */
#define SPOOL_REGIONS_FIXED (8u * 1024 * 1024) /* lock, log, txn regions */
#define SPOOL_MARGIN (4u * 1024 * 1024)        /* log records of recovery */

/* spool_region_bytes - disk blocks already held by __db.* region files */
static uint64_t
spool_region_bytes(const char *dir)
{
	char path[4096];
	struct stat st;
	uint64_t n = 0;

	for (unsigned i = 1; i < 1000; i++) {
		snprintf(path, sizeof(path), "%s/__db.%03u", dir, i);
		if (stat(path, &st) < 0)
			break;
		n += (uint64_t)st.st_blocks * 512;
	}
	return n;
}

int
spool_space_check(const char *dir, size_t cache, uint32_t logbuf, char *err,
                  size_t errlen)
{
	struct statvfs vf;
	uint64_t avail, have, need, mb = 1024 * 1024;

	if (statvfs(dir, &vf) < 0)
		return 0; /* cannot tell: let BDB try */
	avail = (uint64_t)vf.f_bavail * vf.f_frsize;
	have = spool_region_bytes(dir);
	/* the regions are (re)made at full size; recovery then writes
	 * log records, so some space must be free in any case */
	need = (uint64_t)cache + cache / 4 + logbuf + SPOOL_REGIONS_FIXED;
	if (avail + have >= need + SPOOL_MARGIN && avail >= SPOOL_MARGIN)
		return 0;
	snprintf(err, errlen,
	         "disk full: %s has %" PRIu64 " MB free (%" PRIu64
	         " MB more in its region files); the spool needs about %" PRIu64
	         " MB for its cache and regions (spool_cache %" PRIu64
	         " MB) plus %" PRIu64
	         " MB for its log: free space or lower spool_cache",
	         dir, avail / mb, have / mb, need / mb, (uint64_t)cache / mb,
	         (uint64_t)SPOOL_MARGIN / mb);
	return -1;
}

/* ------------------------------------------------------------------ */
/* the state file */

static void
spool_state_path(const struct spool *s, char *path, size_t len)
{
	snprintf(path, len, "%s/%s", s->dir, SPOOL_STATEFILE);
}

/* spool_state_read - the LSN, count and unacknowledged damage; 0 if none */
int
spool_state_read(struct spool *s)
{
	char path[4096], line[1024];
	FILE *fp;
	unsigned long long v;
	unsigned a, b;

	unsigned long long w;
	char id[32];

	s->st_file = s->st_offset = 0;
	s->st_msgs = s->st_bytes = 0;
	s->st_clean = 0;
	s->st_orphans[0] = '\0'; /* unknown: every chunk may be an orphan */
	s->damage[0] = '\0';
	spool_state_path(s, path, sizeof(path));
	if ((fp = fopen(path, "r")) == NULL)
		return 0;
	while (fgets(line, sizeof(line), fp) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if (sscanf(line, "lsn %u %u", &a, &b) == 2) {
			s->st_file = a;
			s->st_offset = b;
		} else if (sscanf(line, "messages %llu", &v) == 1)
			s->st_msgs = v;
		else if (sscanf(line, "clean %llu %llu", &v, &w) == 2) {
			s->st_clean = 1;
			s->st_msgs = v;
			s->st_bytes = w;
		} else if (sscanf(line, "orphans_from %31s", id) == 1 &&
		           (strcmp(id, "-") == 0 || spool_id_valid(id)))
			memcpy(s->st_orphans, id, strlen(id) + 1);
		else if (strncmp(line, "damage ", 7) == 0)
			snprintf(s->damage, sizeof(s->damage), "%.700s",
			         line + 7);
	}
	fclose(fp);
	return 1;
}

/* spool_state_write - the on-disk end of the log, now; -1 on failure */
int
spool_state_write(struct spool *s, int durable)
{
	char path[4096], tmp[4200], buf[1024], clean[80];
	char orphans[SPOOL_ID_LEN + 1];
	DB_LOG_STAT *ls = NULL;
	int fd, n, ok;

	if (s->env == NULL || s->env->log_stat(s->env, &ls, 0) != 0)
		return -1;
	/* never move the witness back: a damaged log keeps its report */
	if (ls->st_disk_file > s->st_file ||
	    (ls->st_disk_file == s->st_file &&
	     ls->st_disk_offset > s->st_offset)) {
		s->st_file = ls->st_disk_file;
		s->st_offset = ls->st_disk_offset;
	}
	free(ls);
	/* the counts hold at a close after which nothing runs, unless a
	 * failed sync left them to be recounted */
	clean[0] = '\0';
	if (s->closing && !s->recount)
		snprintf(clean, sizeof(clean), "clean %llu %llu\n",
		         (unsigned long long)s->msgs,
		         (unsigned long long)s->bytes);
	spool_orphans_from(s, s->closing, orphans);
	n = snprintf(buf, sizeof(buf),
	             "lsn %u %u\nmessages %llu\n%sorphans_from %s\n%s%s%s",
	             (unsigned)s->st_file, (unsigned)s->st_offset,
	             (unsigned long long)s->msgs, clean, orphans,
	             s->damage[0] ? "damage " : "", s->damage,
	             s->damage[0] ? "\n" : "");
	if (n < 0 || (size_t)n >= sizeof(buf))
		return -1;
	spool_state_path(s, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((fd = spool_fd_open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	                        0600)) < 0)
		return -1;
	ok = write(fd, buf, n) == n && (!durable || fsync(fd) == 0);
	if (spool_fd_close(fd) < 0)
		ok = 0;
	if (!ok || rename(tmp, path) < 0) {
		unlink(tmp);
		return -1;
	}
	/* a durable write is one the next open may rely on: the rename too */
	if (durable &&
	    (fd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		ok = fsync(fd) == 0;
		close(fd);
		if (!ok)
			return -1;
	}
	return 0;
}

/*
 * spool_log_check - right after recovery, before any database is open:
 * does the log still reach the LSN the state file says was on disk?
 * When it does not, the database files may hold pages written after
 * the log's new end (a checkpoint flushed them): their LSNs are reset,
 * as for files moved from another environment, or the first change to
 * such a page fails ("LSN past end of log") and the spool is useless.
 * The counts and orphans_from of the state file no longer hold either.
 * 0, or -1 when a reset failed (errno-like BDB code in s->errbuf).
 */
int
spool_log_check(struct spool *s)
{
	DB_LOG_STAT *ls = NULL;
	DIR *d;
	struct dirent *de;
	int ret = 0;

	s->log_short = 0;
	if (s->st_file == 0 || s->env->log_stat(s->env, &ls, 0) != 0)
		return 0;
	s->log_file = ls->st_cur_file;
	s->log_offset = ls->st_cur_offset;
	free(ls);
	if (s->log_file > s->st_file ||
	    (s->log_file == s->st_file && s->log_offset >= s->st_offset))
		return 0;
	s->log_short = 1;
	s->st_clean = 0;
	s->st_orphans[0] = '\0';
	if ((d = opendir(s->dir)) == NULL)
		return spool_fail(s, errno, "reading %s", s->dir);
	while (ret == 0 && (de = readdir(d)) != NULL) {
		size_t n = strlen(de->d_name);

		if (n > 3 && strcmp(de->d_name + n - 3, ".db") == 0 &&
		    (ret = s->env->lsn_reset(s->env, de->d_name, 0)) != 0)
			spool_fail(s, ret,
			           "resetting the LSNs of %s after a "
			           "damaged log",
			           de->d_name);
	}
	closedir(d);
	return ret != 0 ? -1 : 0;
}

/*
 * spool_damage_check - after the count: the report of what
 * spool_log_check found (s->damage, kept until acked).
 */
void
spool_damage_check(struct spool *s)
{
	if (s->st_file == 0)
		return;
	if (!s->log_short) {
		if (s->recover_msgs == 0)
			return;
		/* BDB complained during recovery but the log is long enough */
		snprintf(
		    s->damage, sizeof(s->damage),
		    "recovery reported a damaged transaction log (%.200s); "
		    "%llu message(s) queued when its end was last "
		    "recorded, %llu now",
		    s->recover_first, (unsigned long long)s->st_msgs,
		    (unsigned long long)s->msgs);
		return;
	}
	snprintf(s->damage, sizeof(s->damage),
	         "recovery found the transaction log damaged or truncated: it "
	         "ends at %u/%u but reached %u/%u on disk before; mail "
	         "accepted after that point is lost (%llu message(s) queued "
	         "then, %llu now)%s%.200s",
	         (unsigned)s->log_file, (unsigned)s->log_offset,
	         (unsigned)s->st_file, (unsigned)s->st_offset,
	         (unsigned long long)s->st_msgs, (unsigned long long)s->msgs,
	         s->recover_msgs ? "; BDB said: " : "",
	         s->recover_msgs ? s->recover_first : "");
	/* the witness follows the log we have now */
	s->st_file = s->log_file;
	s->st_offset = s->log_offset;
}

const char *
spool_damage(const struct spool *s)
{
	return s != NULL && s->damage[0] != '\0' ? s->damage : NULL;
}

int
spool_damage_ack(struct spool *s, char *msg, size_t len)
{
	if (s->damage[0] == '\0') {
		snprintf(msg, len, "no spool damage to acknowledge");
		return 0;
	}
	snprintf(msg, len, "acknowledged: %s", s->damage);
	s->damage[0] = '\0';
	if (spool_state_write(s, 1) < 0) {
		snprintf(msg, len, "cannot write %s/%s: %s", s->dir,
		         SPOOL_STATEFILE, strerror(errno));
		return -1;
	}
	return 0;
}
