/*
 * prom.c - the counter table shared by `backmxctl stats` and the
 * Prometheus text endpoint, and that endpoint: a tiny HTTP server on the
 * daemon's loop at `metrics ADDR:PORT` (see metrics.h for what it
 * answers).  Called by main.c (metrics_open/start/close) and ctl.c (the
 * table); reads `stats` and the spool's counts, never writes anything.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "backmxd.h"
#include "jsonw.h"
#include "log.h"
#include "metrics.h"

#define PROM_REQUEST_MAX 4096	/* a request line and headers */
#define PROM_TIMEOUT 10.0
#define PROM_CLIENTS_MAX 32

#define S(f) offsetof(struct stats, f)

const struct metrics_counter metrics_counters[] = {
	{ "sessions", "backmx_sessions_total", NULL,
	  "Inbound SMTP sessions accepted.", 0, S(sessions) },
	{ "sessions_refused", "backmx_sessions_refused_total", NULL,
	  "Inbound connections refused by max_clients or the per-IP limit.",
	  0, S(sessions_refused) },
	{ "accepted", "backmx_accepted_total", NULL,
	  "Messages accepted into the spool (250 after DATA).", 0,
	  S(accepted) },
	{ "accepted_bytes", "backmx_accepted_bytes_total", NULL,
	  "Octets of the messages accepted.", 0, S(accepted_bytes) },
	{ "refused_relay", "backmx_refused_total", "reason=\"relay\"",
	  "Commands or messages refused, by reason.", 0, S(refused_relay) },
	{ "refused_user", "backmx_refused_total", "reason=\"user\"", NULL, 0,
	  S(refused_user) },
	{ "refused_syntax", "backmx_refused_total", "reason=\"syntax\"", NULL,
	  0, S(refused_syntax) },
	{ "refused_loop", "backmx_refused_total", "reason=\"loop\"", NULL, 0,
	  S(refused_loop) },
	{ "refused_size", "backmx_refused_total", "reason=\"size\"", NULL, 0,
	  S(refused_size) },
	{ "refused_smuggling", "backmx_refused_total",
	  "reason=\"smuggling\"", NULL, 0, S(refused_smuggling) },
	{ "refused_spool", "backmx_refused_total", "reason=\"spool\"", NULL,
	  0, S(refused_spool) },
	{ "refused_other", "backmx_refused_total", "reason=\"other\"", NULL,
	  0, S(refused_other) },
	{ "percent_hack", "backmx_percent_hack_total", NULL,
	  "Recipients rewritten by the percent hack.", 0, S(percent_hack) },
	{ "etrn", "backmx_etrn_total", NULL, "ETRN requests served.", 0,
	  S(etrn) },
	{ "delivered", "backmx_delivered_total", NULL,
	  "Recipients delivered to a primary.", 0, S(delivered) },
	{ "deferred", "backmx_deferred_total", NULL,
	  "Recipient delivery attempts deferred.", 0, S(deferred) },
	{ "bounced", "backmx_bounced_total", NULL, "Recipients bounced.", 0,
	  S(bounced) },
	{ "dsn_sent", "backmx_dsn_sent_total", NULL,
	  "Delivery status notifications generated.", 0, S(dsn_sent) },
	{ "tls_inbound", "backmx_tls_inbound_total", NULL,
	  "Inbound STARTTLS handshakes completed.", 0, S(tls_inbound) },
	{ "tls_outbound", "backmx_tls_outbound_total", NULL,
	  "Deliveries made over TLS.", 0, S(tls_outbound) },
	{ "sessions_active", "backmx_sessions_active", NULL,
	  "Inbound SMTP sessions open now.", 1, S(sessions_active) },
	{ "deliveries_active", "backmx_deliveries_active", NULL,
	  "Outbound deliveries in flight now.", 1, S(deliveries_active) },
};
const size_t metrics_ncounters =
	sizeof(metrics_counters) / sizeof(metrics_counters[0]);

uint64_t
metrics_counter_value(const struct metrics_counter *m)
{
	uint64_t v;

	memcpy(&v, (const char *)&stats + m->offset, sizeof(v));
	return v;
}

static int
prom_first_cb(void *arg, const struct spool_envelope *e)
{
	*(int64_t *)arg = e->arrival;
	return 1;
}

int64_t
metrics_oldest_arrival(void)
{
	int64_t arrival = -1;

	if (backmxd.spool == NULL ||
	    spool_scan(backmxd.spool, "", 1, prom_first_cb, &arrival) < 0)
		return -1;
	return arrival;
}

static void
prom_family(struct jsonw *w, const char *metric, const char *help, int gauge)
{
	jsonw_addf(w, "# HELP %s %s\n# TYPE %s %s\n", metric, help, metric,
		   gauge ? "gauge" : "counter");
}

/* prom_page - the whole Prometheus text page, appended to w */
static void
prom_page(struct jsonw *w)
{
	const struct metrics_counter *m;
	uint64_t msgs = 0, bytes = 0;
	int64_t oldest, age = 0;
	size_t i;

	for (i = 0; i < metrics_ncounters; i++) {
		m = &metrics_counters[i];
		/* one HELP/TYPE per family: labelled siblings follow */
		if (i == 0 || strcmp(m->metric, metrics_counters[i - 1].metric))
			prom_family(w, m->metric, m->help, m->gauge);
		if (m->label != NULL)
			jsonw_addf(w, "%s{%s} %llu\n", m->metric, m->label,
				   (unsigned long long)metrics_counter_value(m));
		else
			jsonw_addf(w, "%s %llu\n", m->metric,
				   (unsigned long long)metrics_counter_value(m));
	}
	if (backmxd.spool != NULL)
		spool_count(backmxd.spool, &msgs, &bytes);
	if ((oldest = metrics_oldest_arrival()) >= 0)
		age = (int64_t)time(NULL) - oldest;
	if (age < 0)
		age = 0;
	prom_family(w, "backmx_spool_messages", "Messages in the spool.", 1);
	jsonw_addf(w, "backmx_spool_messages %llu\n",
		   (unsigned long long)msgs);
	prom_family(w, "backmx_spool_bytes", "Body octets in the spool.", 1);
	jsonw_addf(w, "backmx_spool_bytes %llu\n", (unsigned long long)bytes);
	prom_family(w, "backmx_oldest_message_age_seconds",
		    "Age of the oldest queued message (0 when empty).", 1);
	jsonw_addf(w, "backmx_oldest_message_age_seconds %lld\n",
		   (long long)age);
}

/* ------------------------------------------------------------------ */
/* the HTTP endpoint */

struct prom_client {
	struct prom_client *prev, *next;
	int fd;
	ev_io io;
	ev_timer timer;
	char in[PROM_REQUEST_MAX];
	size_t inlen;
	struct jsonw out;
	int replying;
};

static int prom_fd = -1;
static ev_io prom_accept;
static struct prom_client *prom_clients;
static int prom_nclients;

int
metrics_open(const struct config *cfg, char *err, size_t errlen)
{
	struct addrinfo hints, *ai = NULL;
	char host[256], *port;
	int fd, one = 1, r;

	if (cfg->metrics == NULL)
		return 0;
	if (snprintf(host, sizeof(host), "%s", cfg->metrics) >=
		    (int)sizeof(host) ||
	    (port = strrchr(host, ':')) == NULL) {
		snprintf(err, errlen, "metrics %s: expected ADDR:PORT",
			 cfg->metrics);
		return -1;
	}
	*port++ = '\0';
	memmove(host, host[0] == '[' ? host + 1 : host, strlen(host) + 1);
	if (host[0] != '\0' && host[strlen(host) - 1] == ']')
		host[strlen(host) - 1] = '\0';
	memset(&hints, 0, sizeof(hints));
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
	hints.ai_socktype = SOCK_STREAM;
	if ((r = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai)) != 0) {
		snprintf(err, errlen, "metrics %s: %s", cfg->metrics,
			 gai_strerror(r));
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 64) < 0) {
		snprintf(err, errlen, "metrics %s: %s", cfg->metrics,
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	prom_fd = fd;
	return 0;
}

static void
prom_client_free(struct prom_client *c)
{
	ev_io_stop(backmxd.loop, &c->io);
	ev_timer_stop(backmxd.loop, &c->timer);
	close(c->fd);
	jsonw_free(&c->out);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		prom_clients = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	prom_nclients--;
	free(c);
}

void
metrics_close(void)
{
	if (prom_fd == -1)
		return;
	if (backmxd.loop != NULL)
		ev_io_stop(backmxd.loop, &prom_accept);
	close(prom_fd);
	prom_fd = -1;
	while (prom_clients != NULL)
		prom_client_free(prom_clients);
}

static void
prom_reply(struct prom_client *c, int code, const char *reason,
	   const char *extra, const struct jsonw *body, int head)
{
	const char *type = code == 200 ? "text/plain; version=0.0.4; "
					 "charset=utf-8"
				       : "text/plain; charset=utf-8";
	char msg[64];
	size_t blen;

	snprintf(msg, sizeof(msg), "%d %s\n", code, reason);
	blen = body != NULL ? body->len : strlen(msg);
	jsonw_addf(&c->out,
		   "HTTP/1.0 %d %s\r\nContent-Type: %s\r\n"
		   "Content-Length: %zu\r\n%sConnection: close\r\n\r\n",
		   code, reason, type, blen, extra != NULL ? extra : "");
	if (!head) {
		if (body != NULL)
			jsonw_add(&c->out, body->buf, body->len);
		else
			jsonw_adds(&c->out, msg);
	}
	c->replying = 1;
	ev_io_stop(backmxd.loop, &c->io);
	ev_io_set(&c->io, c->fd, EV_WRITE);
	ev_io_start(backmxd.loop, &c->io);
}

/*
 * prom_request - judge the request held in c->in (complete header or
 * not): "METHOD SP TARGET SP HTTP/1.x".  Header fields are ignored.
 */
static void
prom_request(struct prom_client *c)
{
	char *line = c->in, *sp1, *sp2, *eol, *q;
	struct jsonw page;
	int head;

	eol = memchr(line, '\n', c->inlen);
	if (eol == NULL) {
		prom_reply(c, 400, "Bad Request", NULL, NULL, 0);
		return;
	}
	*eol = '\0';
	if (eol > line && eol[-1] == '\r')
		eol[-1] = '\0';
	if ((sp1 = strchr(line, ' ')) == NULL ||
	    (sp2 = strchr(sp1 + 1, ' ')) == NULL || strchr(sp2 + 1, ' ') ||
	    (strcmp(sp2 + 1, "HTTP/1.0") && strcmp(sp2 + 1, "HTTP/1.1")) ||
	    sp1[1] != '/') {
		prom_reply(c, 400, "Bad Request", NULL, NULL, 0);
		return;
	}
	*sp1 = *sp2 = '\0';
	if ((q = strchr(sp1 + 1, '?')) != NULL)
		*q = '\0';
	head = strcmp(line, "HEAD") == 0;
	if (strcmp(line, "GET") != 0 && !head) {
		prom_reply(c, 405, "Method Not Allowed",
			   "Allow: GET, HEAD\r\n", NULL, 0);
		return;
	}
	if (strcmp(sp1 + 1, "/metrics") != 0) {
		prom_reply(c, 404, "Not Found", NULL, NULL, head);
		return;
	}
	jsonw_init(&page);
	prom_page(&page);
	if (page.oom)
		prom_reply(c, 500, "Internal Server Error", NULL, NULL, head);
	else
		prom_reply(c, 200, "OK", NULL, &page, head);
	jsonw_free(&page);
}

/* prom_header_done - has the empty line that ends the header arrived? */
static int
prom_header_done(const char *p, size_t n)
{
	for (size_t i = 0; i + 1 < n; i++)
		if (p[i] == '\n' &&
		    (p[i + 1] == '\n' ||
		     (i + 2 < n && p[i + 1] == '\r' && p[i + 2] == '\n')))
			return 1;
	return 0;
}

static void
prom_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct prom_client *c = w->data;
	ssize_t n;

	if (!c->replying) {
		n = read(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			prom_client_free(c);
			return;
		}
		c->inlen += (size_t)n;
		if (prom_header_done(c->in, c->inlen))
			prom_request(c);
		else if (c->inlen == sizeof(c->in))
			prom_reply(c, 400, "Bad Request", NULL, NULL, 0);
		return;
	}
	n = write(c->fd, c->out.buf, c->out.len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0 || c->out.oom) {
		prom_client_free(c);
		return;
	}
	jsonw_drop(&c->out, (size_t)n);
	if (c->out.len == 0) {
		shutdown(c->fd, SHUT_WR);
		prom_client_free(c);
	}
}

static void
prom_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	prom_client_free(w->data);
}

static void
prom_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct prom_client *c;
	int fd;

	for (;;) {
		fd = accept4(prom_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR &&
			    errno != ECONNABORTED)
				log_warn("metrics: accept: %s",
					 strerror(errno));
			return;
		}
		if (prom_nclients >= PROM_CLIENTS_MAX ||
		    (c = calloc(1, sizeof(*c))) == NULL) {
			close(fd);
			continue;
		}
		c->fd = fd;
		jsonw_init(&c->out);
		ev_io_init(&c->io, prom_io_cb, fd, EV_READ);
		c->io.data = c;
		ev_io_start(loop, &c->io);
		ev_timer_init(&c->timer, prom_timer_cb, PROM_TIMEOUT, 0.);
		c->timer.data = c;
		ev_timer_start(loop, &c->timer);
		c->next = prom_clients;
		if (prom_clients != NULL)
			prom_clients->prev = c;
		prom_clients = c;
		prom_nclients++;
	}
}

void
metrics_start(void)
{
	if (prom_fd == -1)
		return;
	ev_io_init(&prom_accept, prom_accept_cb, prom_fd, EV_READ);
	ev_io_start(backmxd.loop, &prom_accept);
}
