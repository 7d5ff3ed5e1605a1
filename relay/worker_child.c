/*
 * worker_child.c - one worker process of `workers N` (worker.h): its own
 * libev loop accepting on the listening sockets it inherited, its own
 * Berkeley DB handle on the parent's environment (spool_options.attach:
 * a DB_ENV is never shared across fork, the one inherited is left
 * untouched), its own group commit, resolver and verify-cache handle.
 *
 * What stays with the parent goes over the link: a message committed,
 * synced and acknowledged is announced with "Q ID SIZE" (the forwarder
 * schedules it; were the link lost, next.db still has it for the next
 * start), an ETRN asks "F DOMAIN" and waits for the count.  Counters go
 * to this worker's slot of the shared table after every loop iteration
 * (stats.c), per-client limits are counted in the shared table
 * (client_limits.c).  SIGHUP: reload the file the parent just accepted
 * (an unreadable or broken one keeps the running configuration, as in
 * the parent); SIGTERM, or the parent's end of the link closing: stop
 * accepting, close sessions with 421, close the handle, exit 0.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "backmxd.h"
#include "dns.h"
#include "forward.h"
#include "listen.h"
#include "log.h"
#include "pause.h"
#include "rcpt_verify.h"
#include "reload.h"
#include "smtpd.h"
#include "worker.h"

#define WORKER_FLUSH_WAIT 10000 /* ms an ETRN waits for the parent */

static int wk_fd = -1;
static ev_io wk_io;
static ev_signal wk_sighup, wk_sigterm, wk_sigint;
static ev_prepare wk_publish;

/* wk_send - blocking: a packet the parent must get */
static int
wk_send(const char *msg)
{
	while (send(wk_fd, msg, strlen(msg), MSG_NOSIGNAL) < 0) {
		if (errno == EINTR)
			continue;
		return -1;
	}
	return 0;
}

static void
wk_queued(const struct spool_envelope *e)
{
	char msg[64];

	snprintf(msg, sizeof(msg), "Q %s %llu", e->id,
	         (unsigned long long)e->size);
	if (wk_send(msg) < 0)
		log_err("%s: cannot tell the parent (%s); it is delivered "
		        "after the next start",
		        e->id, strerror(errno));
}

/* wk_parent_packet - one unsolicited packet from the parent */
static void
wk_parent_packet(const char *msg)
{
	if (msg[0] == 'P')
		pause_reread(backmxd.cfg->spool);
	else if (msg[0] != 'N') /* a late answer to a timed-out flush */
		log_warn("worker: unknown packet from the parent: %.40s", msg);
}

static int
wk_flush(const char *domain)
{
	char msg[WORKER_MSG_MAX + 1];
	struct pollfd p;
	ssize_t n;
	int count;

	snprintf(msg, sizeof(msg), "F %s", domain != NULL ? domain : "");
	if (wk_send(msg) < 0)
		goto lost;
	/* ETRN is rare: wait here for the answer, other packets served */
	for (;;) {
		p.fd = wk_fd;
		p.events = POLLIN;
		if (poll(&p, 1, WORKER_FLUSH_WAIT) <= 0) {
			log_warn("ETRN %s: no answer from the parent",
			         domain != NULL ? domain : "");
			return 1; /* asked for: say it started */
		}
		n = recv(wk_fd, msg, WORKER_MSG_MAX, MSG_DONTWAIT);
		if (n <= 0) {
			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			goto lost;
		}
		msg[n] = '\0';
		if (sscanf(msg, "N %d", &count) == 1)
			return count;
		wk_parent_packet(msg);
	}
lost:
	log_err("ETRN: the link to the parent is gone");
	return 1;
}

static void
wk_stop(struct ev_loop *loop)
{
	if (backmxd.stopping)
		return;
	backmxd.stopping = 1;
	listener_stop();
	smtpd_shutdown();
	rcpt_verify_shutdown();
	ev_io_stop(loop, &wk_io);
	ev_break(loop, EVBREAK_ALL);
}

static void
wk_link_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	char msg[WORKER_MSG_MAX + 1];
	ssize_t n;

	for (;;) {
		n = recv(wk_fd, msg, WORKER_MSG_MAX, MSG_DONTWAIT);
		if (n > 0) {
			msg[n] = '\0';
			wk_parent_packet(msg);
			continue;
		}
		if (n < 0 && (errno == EINTR))
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		log_err("worker: the parent is gone; stopping");
		wk_stop(loop);
		return;
	}
}

static void
wk_signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	char msg[512];

	if (w->signum == SIGHUP) {
		/* the parent checked the file; force: it also judged the
		 * dropped domains, and a second spool scan per worker is
		 * not needed to keep the queue */
		reload_config(1, msg, sizeof(msg));
		return;
	}
	wk_stop(loop);
}

static void
wk_publish_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	stats_publish();
}

void
worker_child_main(int slot, int fd, int nslots)
{
	const struct config *cfg = backmxd.cfg;
	struct spool *parent = backmxd.spool;
	struct spool_options so;
	char err[512];

	/* the parent gone (kill -9): stop too, the link says it as well */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	ev_loop_fork(backmxd.loop);
	memset(&stats, 0, sizeof(stats));
	stats_set_slot(slot);
	wk_fd = fd;
	/* the parent's DB_ENV handle is left alone: never used, never
	 * closed here (its registry slot and lock file stay the parent's;
	 * the lock file's descriptor keeps a new backmxd out until this
	 * worker is gone too) */
	memset(&so, 0, sizeof(so));
	so.cache_bytes = (size_t)cfg->spool_cache;
	so.attach = 1;
	backmxd.spool =
	    spool_open_opts(cfg->spool, &so, NULL, err, sizeof(err));
	if (backmxd.spool == NULL) {
		log_err("worker %d: spool %s: %s", slot + 1, cfg->spool, err);
		_exit(2);
	}
	spool_ids_share(backmxd.spool, nslots + 1, slot + 1,
	                spool_ids_last(parent));
	backmxd.sched = NULL; /* the schedule is the parent's */
	backmxd.dns = dns_new(backmxd.loop, cfg->dns, cfg->dns_trust_anchor, 30,
	                      err, sizeof(err));
	if (backmxd.dns == NULL) {
		log_err("worker %d: resolver: %s", slot + 1, err);
		_exit(2);
	}
	if (rcpt_verify_init(err, sizeof(err)) < 0) {
		log_err("worker %d: spool %s: %s", slot + 1, cfg->spool, err);
		_exit(2);
	}
	rcpt_verify_configure(cfg);
	pause_load(cfg->spool);
	forward_queued_hook = wk_queued;
	forward_flush_hook = wk_flush;

	smtpd_init();
	listener_keep(slot);
	listener_start();
	ev_io_init(&wk_io, wk_link_cb, wk_fd, EV_READ);
	ev_io_start(backmxd.loop, &wk_io);
	ev_signal_init(&wk_sighup, wk_signal_cb, SIGHUP);
	ev_signal_start(backmxd.loop, &wk_sighup);
	ev_signal_init(&wk_sigterm, wk_signal_cb, SIGTERM);
	ev_signal_start(backmxd.loop, &wk_sigterm);
	ev_signal_init(&wk_sigint, wk_signal_cb, SIGINT);
	ev_signal_start(backmxd.loop, &wk_sigint);
	ev_prepare_init(&wk_publish, wk_publish_cb);
	ev_prepare_start(backmxd.loop, &wk_publish);
	ev_unref(backmxd.loop);

	ev_run(backmxd.loop, 0);

	if (spool_sync(backmxd.spool) < 0)
		log_err("worker %d: spool sync at exit: %s", slot + 1,
		        spool_error(backmxd.spool));
	stats_publish();
	spool_close(backmxd.spool);
	dns_free(backmxd.dns);
	close(wk_fd);
	_exit(0);
}
