/*
 * fdreserve.c - a few descriptors kept for the spool.
 *
 * SYNOPSIS
 *	void spool_fd_reserve_init(void (*logger)(int prio, const char *msg));
 *	void spool_fd_reserve_fill(void);
 *	int spool_fd_open(const char *path, int flags, ...);
 *	int spool_fd_close(int fd);
 *	unsigned spool_fd_reserve_held(void);
 *
 * DESCRIPTION
 *	Out of descriptors (RLIMIT_NOFILE reached by a flood of clients or
 *	outgoing connections), BDB's own open(2) of a log file fails with
 *	EMFILE: a checkpoint or an abort reading an old record, the
 *	replication sending one, log_archive listing the directory.  BDB
 *	then retries for 6 s sleeping inside our event loop, and panics the
 *	environment (DB_RUNRECOVERY: every later transaction fails until a
 *	restart with recovery).  So each process holds SPOOL_FD_RESERVE
 *	descriptors on /dev/null, and BDB's open and directory listing
 *	(installed with db_env_set_func_open and _dirlist) give one of
 *	them back and try again when they meet EMFILE.  BDB's close
 *	(db_env_set_func_close) refills the reserve at once with the slot
 *	it just freed, before anybody else can take it; a file BDB keeps
 *	open (a new log file) is refilled by spool_fd_reserve_fill (the
 *	checkpoint timer) when a descriptor is free again.
 *
 *	The accept paths need no reserve: out of descriptors they pause
 *	(relay/listen.c, relay/fdpause.c) and take the connection later.
 *
 *	spool_fd_reserve_init installs the hooks (once per process; a
 *	forked worker inherits them and its own copy of the descriptors)
 *	and fills the reserve; spool_open calls it before db_env_create,
 *	with the spool's logger (spool_set_logger) for the warning.
 *	spool_fd_open is open(2) with the reserve, for the spool's own
 *	files too (the state file), and spool_fd_close its close(2): the
 *	slot goes back to the reserve, not to the next socket(2).
 *spool_fd_reserve_held - how many are held now (tests, stats).
 *
 * DIAGNOSTICS
 *	A reserved descriptor used: one warning through the spool logger,
 *	at most every 10 s.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "spool_private.h"

/* a checkpoint's log cursor, log_archive's directory, a replication
 * cursor and our state file at the same time, with one to spare */
#define SPOOL_FD_RESERVE 5
#define SPOOL_FD_WARN_EVERY 10

static int fdreserve[SPOOL_FD_RESERVE];
static unsigned fdreserve_n;
static int fdreserve_installed;
static time_t fdreserve_warned;
static void (*fdreserve_logger)(int prio, const char *msg);

void
spool_fd_reserve_fill(void)
{
	int fd;

	while (fdreserve_n < SPOOL_FD_RESERVE) {
		if ((fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
			return;
		fdreserve[fdreserve_n++] = fd;
	}
}

unsigned
spool_fd_reserve_held(void)
{
	return fdreserve_n;
}

/* spool_fd_reserve_take - free one reserved descriptor for what; 0 if
 * none is left */
static int
spool_fd_reserve_take(const char *what)
{
	char line[600];
	time_t now;

	if (fdreserve_n == 0)
		return 0;
	close(fdreserve[--fdreserve_n]);
	now = time(NULL);
	if (fdreserve_logger != NULL &&
	    now - fdreserve_warned >= SPOOL_FD_WARN_EVERY) {
		fdreserve_warned = now;
		snprintf(
		    line, sizeof(line),
		    "spool: out of descriptors: %s with one of the %d kept "
		    "for the spool (%u left)",
		    what, SPOOL_FD_RESERVE, fdreserve_n);
		fdreserve_logger(SPOOL_LOG_ERR, line);
	}
	return 1;
}

int
spool_fd_open(const char *path, int flags, ...)
{
	char what[512];
	mode_t mode = 0;
	va_list ap;
	int fd;

	if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) {
		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
	}
	for (;;) {
		if ((fd = open(path, flags, mode)) >= 0 || errno != EMFILE)
			return fd;
		snprintf(what, sizeof(what), "opening %s", path);
		if (!spool_fd_reserve_take(what)) {
			errno = EMFILE;
			return -1;
		}
	}
}

/* spool_fd_close - BDB's close: the slot freed goes back to the reserve */
int
spool_fd_close(int fd)
{
	int ret = close(fd);

	spool_fd_reserve_fill();
	return ret;
}

/* spool_fd_dirlist - BDB's directory listing (log_archive, the
 * replication's internal init): the names of dir, malloc()ed as BDB's
 * default __os_dirfree frees them */
static int
spool_fd_dirlist(const char *dir, char ***namesp, int *cntp)
{
	char what[512], **names = NULL, **bigger;
	struct dirent *de;
	int cnt = 0, size = 0;
	DIR *d;

	while ((d = opendir(dir)) == NULL) {
		if (errno != EMFILE)
			return errno;
		snprintf(what, sizeof(what), "listing %s", dir);
		if (!spool_fd_reserve_take(what))
			return EMFILE;
	}
	while ((de = readdir(d)) != NULL) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (cnt == size) {
			size = size ? 2 * size : 32;
			if ((bigger = realloc(names, size * sizeof(*names))) ==
			    NULL)
				goto nomem;
			names = bigger;
		}
		if ((names[cnt] = strdup(de->d_name)) == NULL)
			goto nomem;
		cnt++;
	}
	closedir(d);
	spool_fd_reserve_fill();
	*namesp = names;
	*cntp = cnt;
	return 0;
nomem:
	closedir(d);
	while (cnt > 0)
		free(names[--cnt]);
	free(names);
	return ENOMEM;
}

/* spool_fd_dirfree - the pair of spool_fd_dirlist */
static void
spool_fd_dirfree(char **names, int cnt)
{
	while (cnt > 0)
		free(names[--cnt]);
	free(names);
}

void
spool_fd_reserve_init(void (*logger)(int prio, const char *msg))
{
	fdreserve_logger = logger;
	if (!fdreserve_installed) {
		db_env_set_func_open(spool_fd_open);
		db_env_set_func_close(spool_fd_close);
		db_env_set_func_dirlist(spool_fd_dirlist);
		db_env_set_func_dirfree(spool_fd_dirfree);
		fdreserve_installed = 1;
	}
	spool_fd_reserve_fill();
}
