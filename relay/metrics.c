/*
 * metrics.c - the Prometheus text endpoint (`metrics ADDR:PORT`) and the
 * counter table shared with `backmxctl stats` (control.c).  A tiny
 * HTTP/1.x server on the daemon's loop: one bounded request per
 * connection, one response, close.  Reads `stats` and the spool gauges.
 */
#include <sys/queue.h>
#include <sys/socket.h>

#include <errno.h>
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backmxd.h"
#include "dnsbl.h"
#include "fdpause.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "metrics_domain.h"
#include "metrics_queue.h"
#include "milter.h"
#include "mirror.h"
#include "stats.h"

#define METRICS_CLIENTS_MAX 32
#define METRICS_REQUEST_MAX 4096
#define METRICS_TIMEOUT 10.

#define C(field, metric, label, help)                                          \
	{                                                                      \
#field, metric, label, help, 0, offsetof(struct stats, field), \
		    0                                                          \
	}
#define G(field, metric, help)                                                 \
	{                                                                      \
#field, metric, NULL, help, 1, offsetof(struct stats, field),  \
		    0                                                          \
	}

/* entries of one metric (refused_total) stay adjacent: HELP/TYPE once */
const struct metrics_counter metrics_counters[] = {
    C(sessions, "backmx_sessions_total", NULL,
      "Inbound SMTP sessions accepted."),
    C(sessions_refused, "backmx_sessions_refused_total", NULL,
      "Inbound connections refused by max_clients or the per-IP limit."),
    C(accepted, "backmx_accepted_total", NULL,
      "Messages accepted into the spool (250 after DATA)."),
    C(accepted_bytes, "backmx_accepted_bytes_total", NULL,
      "Octets of the messages accepted."),
    C(refused_relay, "backmx_refused_total", "reason=\"relay\"",
      "Commands or messages refused, by reason."),
    C(refused_user, "backmx_refused_total", "reason=\"user\"", NULL),
    C(refused_syntax, "backmx_refused_total", "reason=\"syntax\"", NULL),
    C(refused_loop, "backmx_refused_total", "reason=\"loop\"", NULL),
    C(refused_size, "backmx_refused_total", "reason=\"size\"", NULL),
    C(refused_smuggling, "backmx_refused_total", "reason=\"smuggling\"", NULL),
    C(refused_spool, "backmx_refused_total", "reason=\"spool\"", NULL),
    C(refused_other, "backmx_refused_total", "reason=\"other\"", NULL),
    C(refused_client_limit, "backmx_refused_total", "reason=\"client_limit\"",
      NULL),
    C(refused_client_rate, "backmx_refused_total", "reason=\"client_rate\"",
      NULL),
    C(percent_hack, "backmx_percent_hack_total", NULL,
      "Recipients rewritten by the percent hack."),
    C(etrn, "backmx_etrn_total", NULL, "ETRN requests served."),
    C(delivered, "backmx_delivered_total", NULL, "Recipients delivered."),
    C(deferred, "backmx_deferred_total", NULL,
      "Recipient delivery attempts deferred."),
    C(bounced, "backmx_bounced_total", NULL, "Recipients bounced."),
    C(dsn_sent, "backmx_dsn_sent_total", NULL,
      "Delivery status notifications generated."),
    C(tls_inbound, "backmx_tls_inbound_total", NULL,
      "Inbound STARTTLS handshakes completed."),
    C(tls_outbound, "backmx_tls_outbound_total", NULL,
      "Recipients delivered over TLS."),
    C(tls_outbound_verified, "backmx_tls_outbound_verified_total", NULL,
      "Recipients delivered over TLS with a verified certificate."),
    C(tls_outbound_dane, "backmx_tls_outbound_dane_total", NULL,
      "Recipients delivered over TLS authenticated by DANE."),
    C(tls_deferred, "backmx_tls_deferred_total", NULL,
      "Delivery attempts deferred because the tls policy was not met."),
    C(proxy_dropped, "backmx_proxy_dropped_total", NULL,
      "Connections on a proxy listener dropped (not in proxy_allow, bad "
      "or missing PROXY header)."),
    C(dnsbl_rejected, "backmx_dnsbl_rejected_total", NULL,
      "Clients refused because a dnsbl zone lists them."),
    C(dnsbl_accepted, "backmx_dnsbl_accepted_total", NULL,
      "Clients looked up in the dnsbl zones and not listed."),
    C(dnsbl_tempfailed, "backmx_dnsbl_tempfailed_total", NULL,
      "DNSBL lookups that failed (the client was let through)."),
    C(milter_accepted, "backmx_milter_accepted_total", NULL,
      "Messages the milters let through."),
    C(milter_rejected, "backmx_milter_rejected_total", NULL,
      "Commands or messages a milter rejected (5xx)."),
    C(milter_tempfailed, "backmx_milter_tempfailed_total", NULL,
      "Commands or messages a milter tempfailed (4xx)."),
    C(milter_discarded, "backmx_milter_discarded_total", NULL,
      "Messages a milter discarded (accepted, then dropped)."),
    C(milter_quarantined, "backmx_milter_quarantined_total", NULL,
      "Messages a milter quarantined (held in the spool)."),
    C(milter_failed, "backmx_milter_failed_total", NULL,
      "Milter conversations that failed (down, slow, garbage): "
      "milter_default_action applied."),
    /* counted in ms, shown in seconds: promtool wants base units */
    {"milter_latency_ms", "backmx_milter_wait_seconds_total", NULL,
     "Time spent waiting for milter replies.", 0,
     offsetof(struct stats, milter_latency_ms), 1000},
    C(milter_replies, "backmx_milter_replies_total", NULL,
      "Milter replies waited for."),
    C(dns_deferred, "backmx_dns_deferred_total", NULL,
      "Deliveries deferred because DNS gave no route (NXDOMAIN, NODATA, "
      "SERVFAIL, timeout, DNSSEC bogus)."),
    C(verify_hits, "backmx_verify_hits_total", NULL,
      "Recipient verifications answered from the cache."),
    C(verify_misses, "backmx_verify_misses_total", NULL,
      "Recipient verifications not in the cache (a source was asked)."),
    C(verify_callouts, "backmx_verify_callouts_total", NULL,
      "Recipient questions (RCPT TO) sent to a primary."),
    C(verify_ldap, "backmx_verify_ldap_total", NULL,
      "LDAP recipient lookups sent."),
    C(verify_valid, "backmx_verify_valid_total", NULL,
      "Recipients no file listed, found valid (250)."),
    C(verify_invalid, "backmx_verify_invalid_total", NULL,
      "Recipients no file listed, refused by every source (550 5.1.1)."),
    C(verify_unknown, "backmx_verify_unknown_total", NULL,
      "Recipients that could not be verified (450 4.4.3)."),
    C(verify_stale, "backmx_verify_stale_total", NULL,
      "Recipients accepted on a stale cached yes (primary down)."),
    C(accept_when_refused, "backmx_accept_when_refused_total", NULL,
      "accept_when primary-down: recipients refused, the primary is up."),
    C(accept_when_accepted, "backmx_accept_when_accepted_total", NULL,
      "accept_when primary-down: recipients taken, the primary is down."),
    G(sessions_active, "backmx_sessions_active",
      "Inbound SMTP sessions open now."),
    G(deliveries_active, "backmx_deliveries_active",
      "Outbound deliveries in progress now."),
};
const size_t metrics_ncounters =
    sizeof(metrics_counters) / sizeof(metrics_counters[0]);

struct metrics_client {
	LIST_ENTRY(metrics_client) entry;
	int fd;
	ev_io rio, wio;
	ev_timer timer;
	char in[METRICS_REQUEST_MAX + 1];
	size_t inlen;
	struct json_buf out;
};

static LIST_HEAD(, metrics_client)
    metrics_clients = LIST_HEAD_INITIALIZER(metrics_clients);
static int metrics_nclients;
static int metrics_fd = -1;
static ev_io metrics_accept_io;
static struct fdpause metrics_pause;

uint64_t
metrics_counter_value(const struct metrics_counter *m)
{
	return stats_value(m->offset); /* every process's (stats.c) */
}

static int
metrics_first_cb(void *arg, const struct spool_envelope *e)
{
	*(int64_t *)arg = e->arrival;
	return 1;
}

int64_t
metrics_oldest_arrival(void)
{
	int64_t t = -1;

	if (backmxd.spool == NULL ||
	    spool_scan(backmxd.spool, "", 1, metrics_first_cb, &t) < 0)
		return -1;
	return t;
}

void
metrics_page(struct json_buf *b)
{
	const struct metrics_counter *m, *prev = NULL;
	uint64_t msgs = 0, bytes = 0;
	int64_t oldest, now = time(NULL);
	size_t i;

	for (i = 0; i < metrics_ncounters; prev = m, i++) {
		m = &metrics_counters[i];
		if (prev == NULL || strcmp(prev->metric, m->metric) != 0)
			json_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n",
			                m->metric, m->help ? m->help : "",
			                m->metric,
			                m->gauge ? "gauge" : "counter");
		if (m->divisor > 1)
			json_buf_printf(
			    b, "%s%s%s%s %.3f\n", m->metric,
			    m->label ? "{" : "", m->label ? m->label : "",
			    m->label ? "}" : "",
			    (double)metrics_counter_value(m) / m->divisor);
		else if (m->label != NULL)
			json_buf_printf(
			    b, "%s{%s} %llu\n", m->metric, m->label,
			    (unsigned long long)metrics_counter_value(m));
		else
			json_buf_printf(
			    b, "%s %llu\n", m->metric,
			    (unsigned long long)metrics_counter_value(m));
	}
	if (backmxd.spool != NULL)
		spool_count(backmxd.spool, &msgs, &bytes);
	oldest = metrics_oldest_arrival();
	json_buf_printf(
	    b,
	    "# HELP backmx_spool_messages Messages in the spool.\n"
	    "# TYPE backmx_spool_messages gauge\n"
	    "backmx_spool_messages %llu\n"
	    "# HELP backmx_spool_bytes Body octets in the spool.\n"
	    "# TYPE backmx_spool_bytes gauge\n"
	    "backmx_spool_bytes %llu\n"
	    "# HELP backmx_oldest_message_age_seconds Age of the "
	    "oldest queued message (0 when the spool is empty).\n"
	    "# TYPE backmx_oldest_message_age_seconds gauge\n"
	    "backmx_oldest_message_age_seconds %lld\n",
	    (unsigned long long)msgs, (unsigned long long)bytes,
	    (long long)(oldest > 0 && now > oldest ? now - oldest : 0));
	metrics_domain_page(b);
	metrics_queue_page(b);
	milter_metrics_page(b);
	dnsbl_metrics_page(b);
	mirror_metrics_page(b);
}

/* ------------------------------------------------------------------ */
/* HTTP */

static void
metrics_client_free(struct metrics_client *c)
{
	ev_io_stop(backmxd.loop, &c->rio);
	ev_io_stop(backmxd.loop, &c->wio);
	ev_timer_stop(backmxd.loop, &c->timer);
	close(c->fd);
	json_buf_free(&c->out);
	LIST_REMOVE(c, entry);
	metrics_nclients--;
	free(c);
}

static void
metrics_respond(struct metrics_client *c, int v11, int code, const char *reason,
                int head)
{
	struct json_buf body;

	json_buf_init(&body);
	if (code == 200)
		metrics_page(&body);
	else
		json_buf_printf(&body, "%d %s\n", code, reason);
	json_buf_printf(&c->out,
	                "HTTP/1.%d %d %s\r\n"
	                "Content-Type: %s\r\n"
	                "Content-Length: %zu\r\n"
	                "%s"
	                "Connection: close\r\n\r\n",
	                v11, code, reason,
	                code == 200 ? "text/plain; version=0.0.4; charset=utf-8"
	                            : "text/plain; charset=utf-8",
	                body.len, code == 405 ? "Allow: GET, HEAD\r\n" : "");
	if (!head)
		json_buf_append(&c->out, body.data ? body.data : "", body.len);
	json_buf_free(&body);
	ev_io_stop(backmxd.loop, &c->rio);
	ev_io_start(backmxd.loop, &c->wio);
}

/*
 * metrics_handle - the request line of c->in (its header is complete):
 * METHOD SP TARGET SP HTTP/1.x.  The header fields are not needed.
 */
static void
metrics_handle(struct metrics_client *c)
{
	char *line = c->in, *eol, *sp1, *sp2, *q;
	int v11 = 0, head;

	if ((eol = strchr(line, '\n')) == NULL)
		goto bad;
	*eol = '\0';
	if (eol > line && eol[-1] == '\r')
		eol[-1] = '\0';
	if ((sp1 = strchr(line, ' ')) == NULL ||
	    (sp2 = strchr(sp1 + 1, ' ')) == NULL || strchr(sp2 + 1, ' '))
		goto bad;
	*sp1++ = '\0';
	*sp2++ = '\0';
	if (strcmp(sp2, "HTTP/1.0") == 0)
		v11 = 0;
	else if (strcmp(sp2, "HTTP/1.1") == 0)
		v11 = 1;
	else
		goto bad;
	if (*sp1 == '\0' || line[0] == '\0')
		goto bad;
	for (q = line; *q; q++)
		if (*q < 'A' || *q > 'Z')
			goto bad;
	head = strcmp(line, "HEAD") == 0;
	if (strcmp(line, "GET") != 0 && !head) {
		metrics_respond(c, v11, 405, "Method Not Allowed", 0);
		return;
	}
	if ((q = strchr(sp1, '?')) != NULL)
		*q = '\0';
	if (strcmp(sp1, "/metrics") != 0) {
		metrics_respond(c, v11, 404, "Not Found", head);
		return;
	}
	metrics_respond(c, v11, 200, "OK", head);
	return;
bad:
	metrics_respond(c, 0, 400, "Bad Request", 0);
}

static void
metrics_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct metrics_client *c = w->data;
	ssize_t n;

	n = read(c->fd, c->in + c->inlen, METRICS_REQUEST_MAX - c->inlen);
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			metrics_client_free(c);
		return;
	}
	if (n == 0) {
		metrics_client_free(c);
		return;
	}
	c->inlen += (size_t)n;
	c->in[c->inlen] = '\0';
	if (memchr(c->in, '\0', c->inlen) != NULL) {
		metrics_respond(c, 0, 400, "Bad Request", 0);
		return;
	}
	if (strstr(c->in, "\r\n\r\n") != NULL || strstr(c->in, "\n\n") != NULL)
		metrics_handle(c);
	else if (c->inlen >= METRICS_REQUEST_MAX)
		metrics_respond(c, 0, 400, "Bad Request", 0);
}

static void
metrics_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct metrics_client *c = w->data;
	ssize_t n;

	if (c->out.oom) {
		metrics_client_free(c);
		return;
	}
	n = write(c->fd, c->out.data, c->out.len);
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			metrics_client_free(c);
		return;
	}
	json_buf_consume(&c->out, (size_t)n);
	if (c->out.len == 0) {
		shutdown(c->fd, SHUT_WR);
		metrics_client_free(c);
	}
}

static void
metrics_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	metrics_client_free(w->data);
}

static void
metrics_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct metrics_client *c;
	int fd;

	fd = accept4(metrics_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		if (fdpause_after(loop, &metrics_pause, errno))
			return;
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			log_warn("metrics: accept: %s", strerror(errno));
		return;
	}
	if (metrics_nclients >= METRICS_CLIENTS_MAX ||
	    (c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		return;
	}
	c->fd = fd;
	json_buf_init(&c->out);
	ev_io_init(&c->rio, metrics_read_cb, fd, EV_READ);
	ev_io_init(&c->wio, metrics_write_cb, fd, EV_WRITE);
	ev_timer_init(&c->timer, metrics_timer_cb, METRICS_TIMEOUT, 0.);
	c->rio.data = c->wio.data = c->timer.data = c;
	LIST_INSERT_HEAD(&metrics_clients, c, entry);
	metrics_nclients++;
	ev_io_start(loop, &c->rio);
	ev_timer_start(loop, &c->timer);
}

/* metrics_parse_addr - "ADDR:PORT" or "[ADDR]:PORT", numeric */
static int
metrics_parse_addr(const char *s, struct addrinfo **res)
{
	struct addrinfo hints;
	char host[128];
	const char *port, *end;
	size_t len;

	if (s[0] == '[') {
		if ((end = strchr(s, ']')) == NULL || end[1] != ':')
			return -1;
		len = (size_t)(end - s - 1);
		s++;
		port = end + 2;
	} else {
		if ((end = strrchr(s, ':')) == NULL)
			return -1;
		len = (size_t)(end - s);
		port = end + 1;
	}
	if (len == 0 || len >= sizeof(host) || *port == '\0')
		return -1;
	memcpy(host, s, len);
	host[len] = '\0';
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
	return getaddrinfo(host, port, &hints, res) == 0 ? 0 : -1;
}

int
metrics_open(const struct config *cfg, char *err, size_t errlen)
{
	struct addrinfo *ai;
	int fd, on = 1;

	if (cfg->metrics == NULL)
		return 0;
	if (metrics_parse_addr(cfg->metrics, &ai) < 0) {
		snprintf(err, errlen, "metrics %s: expected ADDR:PORT",
		         cfg->metrics);
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	            0);
	if (fd < 0) {
		snprintf(err, errlen, "metrics: socket: %s", strerror(errno));
		freeaddrinfo(ai);
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (ai->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 64) < 0) {
		snprintf(err, errlen, "metrics %s: %s", cfg->metrics,
		         strerror(errno));
		close(fd);
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	metrics_fd = fd;
	return 0;
}

void
metrics_start(void)
{
	if (metrics_fd < 0)
		return;
	ev_io_init(&metrics_accept_io, metrics_accept_cb, metrics_fd, EV_READ);
	fdpause_init(&metrics_pause, &metrics_accept_io, "metrics");
	ev_io_start(backmxd.loop, &metrics_accept_io);
}

void
metrics_close(void)
{
	struct metrics_client *c;

	while ((c = LIST_FIRST(&metrics_clients)) != NULL)
		metrics_client_free(c);
	metrics_queue_stop();
	if (metrics_fd < 0)
		return;
	ev_io_stop(backmxd.loop, &metrics_accept_io);
	fdpause_stop(backmxd.loop, &metrics_pause);
	close(metrics_fd);
	metrics_fd = -1;
}
