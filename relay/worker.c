/*
 * worker.c - the parent's side of `workers N` (worker.h): fork the
 * accept processes after the listeners are bound and the spool is open
 * (recovered, scanned), then serve their packets on the parent's loop:
 * a queued message goes to the forwarder, an ETRN flush is done and
 * answered, a reload or a paused-domain change is passed on.
 *
 * A worker that dies while the daemon runs (a signal, a non-zero exit)
 * may have died inside the Berkeley DB environment (holding a mutex,
 * half through a transaction): DB_REGISTER then wants recovery, which
 * needs every process out.  The parent logs it, kills the other workers,
 * reaps them and exits 1 without closing the spool cleanly, so the next
 * start (systemd: Restart=on-failure) recovers and finds every
 * acknowledged message in next.db.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backmxd.h"
#include "client_limits.h"
#include "forward.h"
#include "log.h"
#include "pause.h"
#include "reload.h"
#include "worker.h"

struct worker {
	pid_t pid;
	int fd;
	ev_io io;
	ev_child child;
	int reaped, status;
};

static struct worker *workers;
static int nworkers;

int
worker_count(const struct config *cfg)
{
	long n = cfg->workers;

	if (n == 0)
		n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	if (n > CONFIG_WORKERS_MAX)
		n = CONFIG_WORKERS_MAX;
	if (n > 1 && cfg->peer != NULL) {
		log_info("workers %ld: one process with `peer` (the "
		         "replication transport lives in the process that "
		         "commits)",
		         n);
		n = 1;
	}
	return (int)n;
}

int
worker_running(void)
{
	return nworkers;
}

static void
worker_send(struct worker *w, const char *msg)
{
	if (w->fd >= 0 &&
	    send(w->fd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		log_warn("worker %d: %s", (int)w->pid, strerror(errno));
}

/* worker_packet - one packet from a worker; running: the forwarder is
 * there (else only counted, at stop) */
static void
worker_packet(struct worker *w, char *msg, int running)
{
	char id[SPOOL_ID_LEN + 1], ans[64];
	unsigned long long size;

	if (sscanf(msg, "Q %12s %llu", id, &size) == 2) {
		struct spool_envelope *e;

		spool_note_queued(backmxd.spool, size);
		if (!running)
			return; /* in next.db: scheduled at the next start */
		if ((e = spool_envelope_get(backmxd.spool, id)) == NULL) {
			log_err("%s: queued by worker %d but not readable: %s",
			        id, (int)w->pid, spool_error(backmxd.spool));
			return;
		}
		forward_queued(e);
		spool_envelope_free(e);
	} else if (msg[0] == 'F' && msg[1] == ' ') {
		int n = running ? forward_flush(msg[2] ? msg + 2 : NULL) : 0;

		snprintf(ans, sizeof(ans), "N %d", n);
		worker_send(w, ans);
	} else
		log_warn("worker %d: unknown packet %.40s", (int)w->pid, msg);
}

/* worker_drain - every packet waiting; 1 at end of file */
static int
worker_drain(struct worker *w, int running, int flags)
{
	char msg[WORKER_MSG_MAX + 1];
	ssize_t n;

	while (w->fd >= 0) {
		n = recv(w->fd, msg, WORKER_MSG_MAX, flags);
		if (n > 0) {
			msg[n] = '\0';
			worker_packet(w, msg, running);
			continue;
		}
		if (n < 0 && (errno == EINTR))
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		/* end of file or a broken link: the worker is gone */
		return 1;
	}
	return 1;
}

static void
worker_read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct worker *w = io->data;

	if (worker_drain(w, !backmxd.stopping, MSG_DONTWAIT)) {
		ev_io_stop(loop, io);
		close(w->fd);
		w->fd = -1;
	}
}

/* worker_fatal - a worker died: everything out, recovery at the start */
static void
worker_fatal(struct worker *dead)
{
	int st = dead->status;

	if (WIFSIGNALED(st))
		log_err("worker %d killed by signal %d: stopping every "
		        "process; the spool is recovered at the next start",
		        (int)dead->pid, WTERMSIG(st));
	else
		log_err("worker %d exited with status %d: stopping every "
		        "process; the spool is recovered at the next start",
		        (int)dead->pid, WEXITSTATUS(st));
	for (int i = 0; i < nworkers; i++)
		if (!workers[i].reaped)
			kill(workers[i].pid, SIGKILL);
	for (int i = 0; i < nworkers; i++)
		if (!workers[i].reaped)
			waitpid(workers[i].pid, NULL, 0);
	_exit(1);
}

static void
worker_child_cb(struct ev_loop *loop, ev_child *c, int revents)
{
	struct worker *w = c->data;

	ev_child_stop(loop, c);
	w->reaped = 1;
	w->status = c->rstatus;
	if (!backmxd.stopping || !WIFEXITED(w->status) ||
	    WEXITSTATUS(w->status) != 0)
		worker_fatal(w);
}

static void
worker_reload_all(void)
{
	for (int i = 0; i < nworkers; i++)
		if (!workers[i].reaped)
			kill(workers[i].pid, SIGHUP);
}

static void
worker_pause_all(void)
{
	for (int i = 0; i < nworkers; i++)
		worker_send(&workers[i], "P");
}

int
worker_start(int n, char *err, size_t errlen)
{
	if (stats_share(n) < 0 ||
	    client_limits_share((size_t)backmxd.cfg->max_clients) < 0 ||
	    (workers = calloc(n, sizeof(*workers))) == NULL) {
		snprintf(err, errlen,
		         "workers: cannot map the shared tables: %s",
		         strerror(errno));
		return -1;
	}
	/* ids: the parent counts 0, n+1, ...; worker k k, k+n+1, ... */
	spool_ids_share(backmxd.spool, n + 1, 0, 0);
	for (int i = 0; i < n; i++) {
		int sv[2];
		pid_t pid;

		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) <
		    0) {
			snprintf(err, errlen, "workers: socketpair: %s",
			         strerror(errno));
			goto fail;
		}
		fflush(NULL);
		if ((pid = fork()) < 0) {
			snprintf(err, errlen, "workers: fork: %s",
			         strerror(errno));
			close(sv[0]);
			close(sv[1]);
			goto fail;
		}
		if (pid == 0) {
			close(sv[0]);
			for (int k = 0; k < i; k++)
				close(workers[k].fd);
			free(workers);
			workers = NULL;
			nworkers = 0;
			worker_child_main(i, sv[1], n);
		}
		close(sv[1]);
		workers[i].pid = pid;
		workers[i].fd = sv[0];
		nworkers++;
	}
	for (int i = 0; i < n; i++) {
		struct worker *w = &workers[i];

		ev_io_init(&w->io, worker_read_cb, w->fd, EV_READ);
		w->io.data = w;
		ev_io_start(backmxd.loop, &w->io);
		ev_child_init(&w->child, worker_child_cb, w->pid, 0);
		w->child.data = w;
		ev_child_start(backmxd.loop, &w->child);
		log_info("worker %d started (pid %d)", i + 1, (int)w->pid);
	}
	reload_done_hook = worker_reload_all;
	pause_changed_hook = worker_pause_all;
	return 0;
fail:
	for (int i = 0; i < nworkers; i++) {
		kill(workers[i].pid, SIGKILL);
		waitpid(workers[i].pid, NULL, 0);
		close(workers[i].fd);
	}
	nworkers = 0;
	return -1;
}

void
worker_stop(void)
{
	for (int i = 0; i < nworkers; i++)
		if (!workers[i].reaped)
			kill(workers[i].pid, SIGTERM);
}

int
worker_wait(void)
{
	int bad = 0;

	for (int i = 0; i < nworkers; i++) {
		struct worker *w = &workers[i];

		/* blocking: until the worker closes its end at exit */
		if (w->fd >= 0) {
			ev_io_stop(backmxd.loop, &w->io);
			while (!worker_drain(w, 0, 0))
				;
			close(w->fd);
			w->fd = -1;
		}
		if (!w->reaped) {
			ev_child_stop(backmxd.loop, &w->child);
			while (waitpid(w->pid, &w->status, 0) < 0 &&
			       errno == EINTR)
				;
			w->reaped = 1;
		}
		if (!WIFEXITED(w->status) || WEXITSTATUS(w->status) != 0) {
			log_err("worker %d ended abnormally (status 0x%x)",
			        (int)w->pid, (unsigned)w->status);
			bad = 1;
		}
	}
	return bad ? -1 : 0;
}
