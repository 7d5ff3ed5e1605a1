/*
 * listen.c - bind the `listen` addresses (as root, before the privilege
 * drop) and accept connections on the loop, handing each to smtpd.
 *
 * The accept loop drains the backlog until EAGAIN.  When the process is
 * out of descriptors (EMFILE/ENFILE) the connection stays queued in the
 * kernel, so the watchers are paused for a second instead of spinning.
 *
 * With `workers N` every address is bound N times with SO_REUSEPORT
 * (still as root, before the fork): each worker keeps its own copy
 * (listener_keep) and the kernel spreads new connections over them, so
 * no worker is woken for a connection another one takes.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "backmxd.h"
#include "listen.h"
#include "log.h"
#include "proxy.h"
#include "smtpd.h"

#define LISTEN_BACKLOG 4096

struct listener {
	int fd;
	ev_io io;
	char text[80];
	int proxy; /* a PROXY header comes first (proxy.c) */
	int copy;  /* which worker's (0 without workers) */
};

static struct listener *listeners;
static int nlisteners;
static ev_timer listen_pause;
static ev_tstamp listen_last_warn;

int
listener_open(const struct config *cfg, int copies, char *err, size_t errlen)
{
	if (copies < 1)
		copies = 1;
	listeners = calloc((size_t)cfg->nlisten * copies, sizeof(*listeners));
	if (listeners == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (int j = 0; j < cfg->nlisten * copies; j++) {
		const struct config_listen *l = &cfg->listen[j % cfg->nlisten];
		int fd, on = 1;

		fd = socket(l->ss.ss_family,
		            SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			snprintf(err, errlen, "listen %s: socket: %s", l->text,
			         strerror(errno));
			return -1;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
		if (copies > 1 && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on,
		                             sizeof(on)) < 0) {
			snprintf(err, errlen, "listen %s: SO_REUSEPORT: %s",
			         l->text, strerror(errno));
			close(fd);
			return -1;
		}
		if (l->ss.ss_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on,
			           sizeof(on));
		if (bind(fd, (const struct sockaddr *)&l->ss, l->sslen) < 0 ||
		    listen(fd, LISTEN_BACKLOG) < 0) {
			snprintf(err, errlen, "listen %s: %s", l->text,
			         strerror(errno));
			close(fd);
			return -1;
		}
		listeners[nlisteners].fd = fd;
		listeners[nlisteners].proxy = l->proxy;
		listeners[nlisteners].copy = j / cfg->nlisten;
		snprintf(listeners[nlisteners].text,
		         sizeof(listeners[nlisteners].text), "%s", l->text);
		nlisteners++;
	}
	return 0;
}

void
listener_keep(int copy)
{
	int n = 0;

	for (int i = 0; i < nlisteners; i++) {
		if (listeners[i].copy != copy) {
			close(listeners[i].fd);
			continue;
		}
		listeners[n++] = listeners[i];
	}
	nlisteners = n;
}

static void
listener_resume_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	if (backmxd.stopping)
		return;
	for (int i = 0; i < nlisteners; i++)
		ev_io_start(loop, &listeners[i].io);
}

static void
listener_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct listener *l = w->data;
	struct sockaddr_storage ss;
	socklen_t len;
	int fd;

	for (;;) {
		len = sizeof(ss);
		fd = accept4(l->fd, (struct sockaddr *)&ss, &len,
		             SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			if (l->proxy)
				proxy_accept(fd, (struct sockaddr *)&ss, len);
			else
				smtpd_session_new(fd, (struct sockaddr *)&ss,
				                  len);
			continue;
		}
		switch (errno) {
		case EINTR:
		case ECONNABORTED:
		case EPROTO:
			continue;
		case EAGAIN:
			return;
		case EMFILE:
		case ENFILE:
		case ENOBUFS:
		case ENOMEM:
			if (ev_now(loop) - listen_last_warn > 10) {
				log_warn(
				    "accept on %s: %s; pausing accepts for "
				    "1s",
				    l->text, strerror(errno));
				listen_last_warn = ev_now(loop);
			}
			for (int i = 0; i < nlisteners; i++)
				ev_io_stop(loop, &listeners[i].io);
			ev_timer_set(&listen_pause, 1., 0.);
			ev_timer_start(loop, &listen_pause);
			return;
		default:
			log_warn("accept on %s: %s", l->text, strerror(errno));
			return;
		}
	}
}

void
listener_start(void)
{
	ev_timer_init(&listen_pause, listener_resume_cb, 1., 0.);
	for (int i = 0; i < nlisteners; i++) {
		ev_io_init(&listeners[i].io, listener_accept_cb,
		           listeners[i].fd, EV_READ);
		listeners[i].io.data = &listeners[i];
		ev_io_start(backmxd.loop, &listeners[i].io);
		log_info("listening on %s%s", listeners[i].text,
		         listeners[i].proxy ? " (PROXY protocol)" : "");
	}
}

void
listener_stop(void)
{
	ev_timer_stop(backmxd.loop, &listen_pause);
	proxy_shutdown();
	for (int i = 0; i < nlisteners; i++) {
		ev_io_stop(backmxd.loop, &listeners[i].io);
		close(listeners[i].fd);
	}
	nlisteners = 0;
}
