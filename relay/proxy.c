/*
 * proxy.c - read the PROXY header on a `listen ADDR proxy` connection
 * before the session starts (proxy.h).
 *
 * Called by listen.c; calls proxy_parse() and smtpd_session_new().  The
 * header is read with MSG_PEEK and then consumed exactly, so octets
 * after it (an early talker's) stay in the socket for smtpd.  Waiting
 * connections are few and small: bounded by max_clients, each a fixed
 * buffer and a timer.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "backmxd.h"
#include "config_filter.h"
#include "log.h"
#include "proxy.h"
#include "smtpd.h"

#define PROXY_TIMEOUT 10. /* seconds for the whole header */

struct proxy_conn {
	int fd;
	ev_io rio;
	ev_timer timer;
	struct sockaddr_storage peer;
	socklen_t peerlen;
	char addr[INET6_ADDRSTRLEN];
	unsigned char buf[PROXY_HDR_MAX];
	size_t len;
	struct proxy_conn *next, *prev;
};

static struct proxy_conn *proxy_conns;
static int proxy_nconns;

static void
proxy_free(struct proxy_conn *p, int close_fd)
{
	ev_io_stop(backmxd.loop, &p->rio);
	ev_timer_stop(backmxd.loop, &p->timer);
	if (close_fd)
		close(p->fd);
	if (p->prev != NULL)
		p->prev->next = p->next;
	else
		proxy_conns = p->next;
	if (p->next != NULL)
		p->next->prev = p->prev;
	proxy_nconns--;
	free(p);
}

static void
proxy_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct proxy_conn *p = w->data;

	stats.proxy_dropped++;
	log_info("proxy: dropping [%s]: no complete PROXY header within %.0fs",
	         p->addr, PROXY_TIMEOUT);
	proxy_free(p, 1);
}

static void
proxy_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct proxy_conn *p = w->data;
	struct proxy_hdr h;
	const char *why;
	ssize_t n;
	int r;

	n = recv(p->fd, p->buf + p->len, sizeof(p->buf) - p->len, MSG_PEEK);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		log_info("proxy: [%s] closed before a PROXY header", p->addr);
		proxy_free(p, 1);
		return;
	}
	r = proxy_parse(p->buf, p->len + n, &h, &why);
	if (r < 0) {
		stats.proxy_dropped++;
		log_info("proxy: dropping [%s]: %s", p->addr, why);
		proxy_free(p, 1);
		return;
	}
	/* consume the header's octets only (all of them if incomplete) */
	size_t take = r > 0 ? (size_t)r - p->len : (size_t)n;

	if (recv(p->fd, p->buf + p->len, take, 0) != (ssize_t)take) {
		proxy_free(p, 1);
		return;
	}
	p->len += take;
	if (r == 0)
		return;
	int fd = p->fd;

	if (h.local) {
		log_info("proxy: [%s] sent a %s header: its own connection",
		         p->addr, h.version == 2 ? "v2 LOCAL" : "v1 UNKNOWN");
		struct sockaddr_storage peer = p->peer;
		socklen_t peerlen = p->peerlen;

		proxy_free(p, 0);
		smtpd_session_new(fd, (struct sockaddr *)&peer, peerlen);
		return;
	}
	char client[INET6_ADDRSTRLEN] = "?";

	if (h.src.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&h.src)->sin_addr,
		          client, sizeof(client));
	else
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&h.src)->sin6_addr,
		          client, sizeof(client));
	log_info("proxy: [%s] carries client [%s] (v%d)", p->addr, client,
	         h.version);
	proxy_free(p, 0);
	smtpd_session_new(fd, (struct sockaddr *)&h.src, h.srclen);
}

void
proxy_accept(int fd, const struct sockaddr *sa, socklen_t salen)
{
	const struct config *cfg = backmxd.cfg;
	const struct config_filter *f = cfg->filter;
	struct proxy_conn *p;
	char addr[INET6_ADDRSTRLEN] = "unknown";

	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr,
		          addr, sizeof(addr));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6,
		          &((const struct sockaddr_in6 *)sa)->sin6_addr, addr,
		          sizeof(addr));
	if (backmxd.stopping) {
		close(fd);
		return;
	}
	if (f == NULL ||
	    !config_cidr_match(f->proxy_allow, f->nproxy_allow, sa)) {
		stats.proxy_dropped++;
		log_warn("proxy: dropping [%s]: not in proxy_allow", addr);
		close(fd);
		return;
	}
	if (proxy_nconns >= cfg->max_clients ||
	    (p = calloc(1, sizeof(*p))) == NULL) {
		stats.sessions_refused++;
		log_warn("proxy: dropping [%s]: too many connections waiting "
		         "for their PROXY header",
		         addr);
		close(fd);
		return;
	}
	p->fd = fd;
	memcpy(&p->peer, sa, salen < sizeof(p->peer) ? salen : sizeof(p->peer));
	p->peerlen = salen;
	snprintf(p->addr, sizeof(p->addr), "%s", addr);
	p->next = proxy_conns;
	if (proxy_conns != NULL)
		proxy_conns->prev = p;
	proxy_conns = p;
	proxy_nconns++;
	ev_io_init(&p->rio, proxy_read_cb, fd, EV_READ);
	p->rio.data = p;
	ev_timer_init(&p->timer, proxy_timer_cb, PROXY_TIMEOUT, 0.);
	p->timer.data = p;
	ev_io_start(backmxd.loop, &p->rio);
	ev_timer_start(backmxd.loop, &p->timer);
}

void
proxy_shutdown(void)
{
	while (proxy_conns != NULL)
		proxy_free(proxy_conns, 1);
}
