/*
 * control.c - the control socket server of backmxd (protocol in
 * control.h).  Owns the listening UNIX socket and its clients; every
 * client lives on the loop and never blocks it: listings stream from
 * spool_scan() in bounded batches, paced by the client's reading.
 * The queue commands live in control_queue.c, show in control_show.c,
 * pause/resume in pause.c (shared state in control_int.h); this file
 * dispatches, runs stats and check-dns (checkdns.c) and owns the
 * connections.  Every command is logged with the peer's uid.
 */
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backmxd.h"
#include "checkdns.h"
#include "control.h"
#include "control_int.h"
#include "fdpause.h"
#include "pause.h"
#include "forward.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "rcpt_verify.h"
#include "reload.h"
#include "mirror.h"
#include "stats.h"

#define CONTROL_CLIENTS_MAX 64
#define CONTROL_BATCH 64             /* envelopes per spool_scan call */
#define CONTROL_OUT_HIGH (64 * 1024) /* stop reading the spool above */
#define CONTROL_REQUEST_TIMEOUT 10.  /* to send the request line */
#define CONTROL_IDLE_TIMEOUT 120.    /* without output progress */

struct control_domstat {
	char name[POLICY_DOMAIN_MAX + 1];
	uint64_t msgs;
	int64_t oldest; /* arrival, 0 = none */
	uint64_t seen;  /* serial of the last message counted */
};

static LIST_HEAD(, control_client)
    control_clients = LIST_HEAD_INITIALIZER(control_clients);
static int control_nclients;
static int control_fd = -1;
static ev_io control_accept_io;
static struct fdpause control_accept_pause;
static char control_path[sizeof(((struct sockaddr_un *)0)->sun_path)];

static void control_client_free(struct control_client *c);

/* ------------------------------------------------------------------ */
/* output */

void
control_kick(struct control_client *c)
{
	ev_io_start(backmxd.loop, &c->wio);
}

void
control_end_ok(struct control_client *c)
{
	json_buf_puts(&c->out, ".\n");
	c->ended = 1;
	c->produce = NULL;
	control_kick(c);
}

void
control_end_err(struct control_client *c, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_buf_puts(&c->out, "-ERR ");
	json_put_text(&c->out, msg);
	json_buf_puts(&c->out, "\n");
	c->ended = 1;
	c->produce = NULL;
	control_kick(c);
}

/* control_line - one "+TEXT" line; the text is made safe for one line */
void
control_line(struct control_client *c, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	json_buf_puts(&c->out, "+");
	json_put_text(&c->out, line);
	json_buf_puts(&c->out, "\n");
}

void
control_progress(struct control_client *c, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	json_buf_puts(&c->out, "~");
	json_put_text(&c->out, line);
	json_buf_puts(&c->out, "\n");
	control_kick(c);
}

const char *
control_state_name(int state)
{
	switch (state) {
	case SPOOL_RCPT_PENDING:
		return "pending";
	case SPOOL_RCPT_DELIVERED:
		return "delivered";
	case SPOOL_RCPT_FAILED:
		return "failed";
	}
	return "unknown";
}

void
control_time(char *buf, size_t len, int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t <= 0 || localtime_r(&tt, &tm) == NULL)
		snprintf(buf, len, "-");
	else
		strftime(buf, len, "%b %d %H:%M:%S", &tm);
}

/* control_put_json - the queue --json object of e (no newline) */
void
control_put_json(struct json_buf *b, const struct spool_envelope *e)
{
	int i;

	json_buf_puts(b, "{\"id\": ");
	json_put_cstring(b, e->id);
	json_buf_printf(b, ", \"size\": %llu, \"arrival\": %lld, \"sender\": ",
	                (unsigned long long)e->size, (long long)e->arrival);
	json_put_cstring(b, e->sender ? e->sender : "");
	json_buf_printf(b, ", \"held\": %s, \"recipients\": [",
	                e->held ? "true" : "false");
	for (i = 0; i < e->nrcpt; i++) {
		const struct spool_rcpt *r = &e->rcpt[i];

		json_buf_puts(b, i ? ", {\"address\": " : "{\"address\": ");
		json_put_cstring(b, r->address ? r->address : "");
		json_buf_printf(b,
		                ", \"state\": \"%s\", \"attempts\": %d, "
		                "\"next_attempt\": %lld, \"last_error\": ",
		                control_state_name(r->state), r->attempts,
		                (long long)r->next_attempt);
		json_put_cstring(b, r->last_error);
		json_buf_puts(b, "}");
	}
	json_buf_puts(b, "]");
}

/* control_put_human - the postqueue-like lines of e */
void
control_put_human(struct control_client *c, const struct spool_envelope *e)
{
	char when[32];
	int i;

	control_time(when, sizeof(when), e->arrival);
	control_line(c, "%-12s %9llu  %-15s  <%s>%s", e->id,
	             (unsigned long long)e->size, when,
	             e->sender ? e->sender : "", e->held ? "  (held)" : "");
	for (i = 0; i < e->nrcpt; i++) {
		const struct spool_rcpt *r = &e->rcpt[i];

		if (r->state == SPOOL_RCPT_PENDING && !e->held) {
			control_time(when, sizeof(when), r->next_attempt);
			control_line(c, "    %-9s %s  (%d attempt%s, next %s)",
			             control_state_name(r->state),
			             r->address ? r->address : "", r->attempts,
			             r->attempts == 1 ? "" : "s", when);
		} else
			control_line(c, "    %-9s %s  (%d attempt%s)",
			             control_state_name(r->state),
			             r->address ? r->address : "", r->attempts,
			             r->attempts == 1 ? "" : "s");
		if (r->last_error != NULL)
			control_line(c, "              %s", r->last_error);
	}
}

/* ------------------------------------------------------------------ */
/* stats: counters now, gauges by a batched scan */

static int
control_domstat_cmp(const void *a, const void *b)
{
	return strcmp(((const struct control_domstat *)a)->name,
	              ((const struct control_domstat *)b)->name);
}

static int
control_stats_one_cb(void *arg, const struct spool_envelope *e)
{
	struct control_client *c = arg;
	struct control_domstat key, *d;
	int i;

	memcpy(c->after, e->id, sizeof(c->after));
	c->after[SPOOL_ID_LEN] = '\0';
	c->nmsgs++;
	c->nbytes += e->size;
	if (c->oldest == 0 || (e->arrival > 0 && e->arrival < c->oldest))
		c->oldest = e->arrival;
	for (i = 0; i < e->nrcpt; i++) {
		memset(&key, 0, sizeof(key)); /* the comparator reads name */
		if (e->rcpt[i].state != SPOOL_RCPT_PENDING ||
		    policy_addr_domain_lc(e->rcpt[i].address, key.name) < 0)
			continue;
		d = bsearch(&key, c->dom, c->ndom, sizeof(*c->dom),
		            control_domstat_cmp);
		/* a message counts once per domain: c->nmsgs is its serial */
		if (d == NULL || d->seen == c->nmsgs)
			continue;
		d->seen = c->nmsgs;
		d->msgs++;
		if (d->oldest == 0 || e->arrival < d->oldest)
			d->oldest = e->arrival;
	}
	return 0;
}

static void
control_stats_report(struct control_client *c)
{
	uint64_t msgs, bytes;
	int64_t age =
	    c->oldest > 0 && c->now > c->oldest ? c->now - c->oldest : 0;
	struct mirror_counter mc[MIRROR_COUNTERS_MAX];
	size_t i, nm;

	spool_count(backmxd.spool, &msgs, &bytes);
	if (c->req.json) {
		json_buf_puts(&c->out, "+{");
		for (i = 0; i < metrics_ncounters; i++)
			json_buf_printf(
			    &c->out, "\"%s\": %llu, ", metrics_counters[i].name,
			    (unsigned long long)metrics_counter_value(
			        &metrics_counters[i]));
		nm = mirror_counters(mc, MIRROR_COUNTERS_MAX);
		for (i = 0; i < nm; i++)
			json_buf_printf(&c->out, "\"%s\": %llu, ", mc[i].name,
			                (unsigned long long)mc[i].value);
		json_buf_printf(&c->out,
		                "\"spool_messages\": %llu, \"spool_bytes\": "
		                "%llu, \"oldest_message_age\": %lld, ",
		                (unsigned long long)msgs,
		                (unsigned long long)bytes, (long long)age);
		json_buf_puts(&c->out, "\"spool_damage\": ");
		if (spool_damage(backmxd.spool) != NULL)
			json_put_cstring(&c->out, spool_damage(backmxd.spool));
		else
			json_buf_puts(&c->out, "null");
		json_buf_puts(&c->out, ", \"domains\": {");
		for (i = 0; i < c->ndom; i++) {
			const struct control_domstat *d = &c->dom[i];

			json_buf_puts(&c->out, i ? ", " : "");
			json_put_cstring(&c->out, d->name);
			json_buf_printf(
			    &c->out,
			    ": {\"messages\": %llu, "
			    "\"oldest_age\": %lld}",
			    (unsigned long long)d->msgs,
			    (long long)(d->oldest > 0 && c->now > d->oldest
			                    ? c->now - d->oldest
			                    : 0));
		}
		json_buf_puts(&c->out, "}}\n");
		return;
	}
	for (i = 0; i < metrics_ncounters; i++)
		control_line(c, "%-22s %llu", metrics_counters[i].name,
		             (unsigned long long)metrics_counter_value(
		                 &metrics_counters[i]));
	nm = mirror_counters(mc, MIRROR_COUNTERS_MAX);
	for (i = 0; i < nm; i++)
		control_line(c, "%-22s %llu", mc[i].name,
		             (unsigned long long)mc[i].value);
	control_line(c, "%-22s %llu", "spool_messages",
	             (unsigned long long)msgs);
	control_line(c, "%-22s %llu", "spool_bytes", (unsigned long long)bytes);
	control_line(c, "%-22s %lld", "oldest_message_age", (long long)age);
	if (spool_damage(backmxd.spool) != NULL)
		control_line(c, "%-22s %s (backmxctl ack-spool clears this)",
		             "spool_damage", spool_damage(backmxd.spool));
	for (i = 0; i < c->ndom; i++) {
		const struct control_domstat *d = &c->dom[i];

		control_line(c, "domain %-32s %llu queued, oldest %llds",
		             d->name, (unsigned long long)d->msgs,
		             (long long)(d->oldest > 0 && c->now > d->oldest
		                             ? c->now - d->oldest
		                             : 0));
	}
}

static void
control_stats_produce(struct control_client *c)
{
	int n;

	n = spool_scan(backmxd.spool, c->after, CONTROL_BATCH,
	               control_stats_one_cb, c);
	if (n < 0) {
		control_end_err(c, "spool: %s", spool_error(backmxd.spool));
		return;
	}
	if (n == CONTROL_BATCH)
		return;
	control_stats_report(c);
	log_info("control: stats uid=%ld", c->uid);
	control_end_ok(c);
}

static void
control_stats_start(struct control_client *c)
{
	const struct policy *p = backmxd.cfg->policy;
	int i;

	c->now = time(NULL);
	/* copied: a SIGHUP may replace the config during the scan */
	if (p->ndomains > 0) {
		c->dom = calloc((size_t)p->ndomains, sizeof(*c->dom));
		if (c->dom == NULL) {
			control_end_err(c, "out of memory");
			return;
		}
		for (i = 0; i < p->ndomains; i++)
			snprintf(c->dom[i].name, sizeof(c->dom[i].name), "%s",
			         p->domains[i]->name);
		c->ndom = (size_t)p->ndomains;
		qsort(c->dom, c->ndom, sizeof(*c->dom), control_domstat_cmp);
	}
	c->produce = control_stats_produce;
}

/* ------------------------------------------------------------------ */
/* commands shared helpers */

int
control_domain_known(struct control_client *c, const char *domain)
{
	if (policy_find_domain(backmxd.cfg->policy, domain) != NULL)
		return 1;
	control_end_err(c, "unknown domain %s", domain);
	return 0;
}

/* ------------------------------------------------------------------ */
/* verify ADDRESS [--now] (rcpt_verify.c) */

static void
control_verify_line_cb(void *arg, const char *text)
{
	struct control_client *c = arg;

	if (c->req.json) {
		json_buf_puts(&c->out, "+");
		json_put_cstring(&c->out, text);
		json_buf_puts(&c->out, "\n");
	} else
		control_line(c, "%s", text);
	ev_timer_again(backmxd.loop, &c->timer);
	control_kick(c);
}

static void
control_verify_done_cb(void *arg, int ok)
{
	struct control_client *c = arg;

	c->rv = NULL;
	control_end_ok(c);
	control_kick(c);
}

static void
control_verify(struct control_client *c)
{
	char err[400];

	log_info("control: verify %s%s uid=%ld", c->req.args[0],
	         c->req.now ? " --now" : "", c->uid);
	c->rv = rcpt_verify_ctl_start(
	    c->req.args[0], c->req.now, control_verify_line_cb,
	    control_verify_done_cb, c, err, sizeof(err));
	if (c->rv == NULL)
		control_end_err(c, "verify %s: %s", c->req.args[0], err);
}

/* ------------------------------------------------------------------ */
/* check-dns DOMAIN */

static void
control_checkdns_line_cb(void *arg, const char *level, const char *check,
                         const char *text)
{
	struct control_client *c = arg;

	if (level == NULL)
		level = "INFO";

	if (c->req.json) {
		json_buf_puts(&c->out, "+{\"status\": ");
		json_put_cstring(&c->out, level);
		json_buf_puts(&c->out, ", \"check\": ");
		json_put_cstring(&c->out, check ? check : "");
		json_buf_puts(&c->out, ", \"message\": ");
		json_put_cstring(&c->out, text ? text : "");
		json_buf_puts(&c->out, "}\n");
	} else
		control_line(c, "%-4s %s: %s", level, check ? check : "",
		             text ? text : "");
	ev_timer_again(backmxd.loop, &c->timer);
	control_kick(c);
}

static void
control_checkdns_done_cb(void *arg, int nfail)
{
	struct control_client *c = arg;

	c->cd = NULL;
	log_info("control: check-dns domain=%s fail=%d uid=%ld", c->req.args[0],
	         nfail, c->uid);
	if (nfail > 0)
		control_end_err(c, "check-dns %s: %d check%s failed",
		                c->req.args[0], nfail, nfail == 1 ? "" : "s");
	else
		control_end_ok(c);
}

static void
control_check_dns(struct control_client *c)
{
	c->cd = checkdns_start(backmxd.dns, backmxd.cfg, c->req.args[0],
	                       control_checkdns_line_cb,
	                       control_checkdns_done_cb, c);
	if (c->cd == NULL)
		control_end_err(c, "check-dns %s: cannot start the lookups",
		                c->req.args[0]);
}

/* ------------------------------------------------------------------ */
/* the client connection */

/* ------------------------------------------------------------------ */
/* reload [--force], ack-spool (owned with main.c/reload.c by the
 * configuration and fault handling) */

static void
control_reload(struct control_client *c)
{
	char msg[1024];

	log_info("control: reload%s uid=%ld", c->req.force ? " --force" : "",
	         c->uid);
	if (reload_config(c->req.force, msg, sizeof(msg)) < 0) {
		control_end_err(c, "%s", msg);
		return;
	}
	control_line(c, "%s", msg);
	control_end_ok(c);
}

static void
control_ack_spool(struct control_client *c)
{
	char msg[512];

	log_info("control: ack-spool uid=%ld", c->uid);
	if (spool_damage_ack(backmxd.spool, msg, sizeof(msg)) < 0) {
		control_end_err(c, "%s", msg);
		return;
	}
	control_line(c, "%s", msg);
	control_end_ok(c);
}

static void
control_dispatch(struct control_client *c)
{
	char err[256];

	if (control_request_parse(c->in, c->inlen, &c->req, err, sizeof(err)) <
	    0) {
		log_info("control: refused request: %s uid=%ld", err, c->uid);
		control_end_err(c, "%s", err);
		return;
	}
	if (backmxd.stopping) {
		control_end_err(c, "backmxd is stopping");
		return;
	}
	switch (c->req.cmd) {
	case CONTROL_QUEUE:
	case CONTROL_FLUSH:
	case CONTROL_HOLD:
	case CONTROL_RELEASE:
	case CONTROL_DELETE:
	case CONTROL_BOUNCE:
	case CONTROL_REQUEUE:
		control_queue_start(c);
		break;
	case CONTROL_SHAPE:
		control_shape_start(c);
		break;
	case CONTROL_SHOW:
		control_show_start(c);
		break;
	case CONTROL_PAUSE:
		control_pause(c, 1);
		break;
	case CONTROL_RESUME:
		control_pause(c, 0);
		break;
	case CONTROL_STATS:
		control_stats_start(c);
		break;
	case CONTROL_CHECK_DNS:
		control_check_dns(c);
		break;
	case CONTROL_VERIFY:
		control_verify(c);
		break;
	case CONTROL_RELOAD:
		control_reload(c);
		break;
	case CONTROL_ACK_SPOOL:
		control_ack_spool(c);
		break;
	case CONTROL_PEER:
		control_peer(c);
		break;
	case CONTROL_TAKEOVER:
		control_takeover(c);
		break;
	}
	control_kick(c);
}

static void
control_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct control_client *c = w->data;
	char junk[512], *lf;
	ssize_t n;

	if (c->have_request) {
		/* only to notice the client going away; a client that
		 * merely shut down its sending side still gets its answer */
		n = read(c->fd, junk, sizeof(junk));
		if (n == 0)
			ev_io_stop(loop, &c->rio);
		else if (n < 0 && errno != EAGAIN && errno != EINTR)
			control_client_free(c);
		return;
	}
	n = read(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen);
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			control_client_free(c);
		return;
	}
	if (n == 0) {
		control_client_free(c);
		return;
	}
	lf = memchr(c->in + c->inlen, '\n', (size_t)n);
	c->inlen += (size_t)n;
	if (lf == NULL && c->inlen < sizeof(c->in))
		return;
	c->have_request = 1;
	ev_timer_stop(loop, &c->timer);
	c->timer.repeat = CONTROL_IDLE_TIMEOUT;
	ev_timer_again(loop, &c->timer);
	if (lf == NULL) {
		log_info("control: refused request: too long uid=%ld", c->uid);
		control_end_err(c, "request too long");
		return;
	}
	c->inlen = (size_t)(lf - c->in) + 1;
	control_dispatch(c);
}

static void
control_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct control_client *c = w->data;
	ssize_t n;

	if (c->produce != NULL && c->out.len < CONTROL_OUT_HIGH)
		c->produce(c);
	if (c->out.oom) {
		log_warn("control: out of memory, client dropped");
		control_client_free(c);
		return;
	}
	if (c->out.len > 0) {
		n = write(c->fd, c->out.data, c->out.len);
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				control_client_free(c);
			return;
		}
		json_buf_consume(&c->out, (size_t)n);
		ev_timer_again(loop, &c->timer);
	}
	if (c->out.len == 0) {
		if (c->ended)
			control_client_free(c);
		else if (c->produce == NULL)
			ev_io_stop(loop, &c->wio); /* check-dns pending */
	}
}

static void
control_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct control_client *c = w->data;

	log_info("control: client %s, dropped uid=%ld",
	         c->have_request ? "stopped reading" : "sent no request",
	         c->uid);
	control_client_free(c);
}

static void
control_client_free(struct control_client *c)
{
	if (c == NULL)
		return;
	if (c->cd != NULL)
		checkdns_cancel(c->cd);
	rcpt_verify_ctl_cancel(c->rv);
	control_job_free(c->job);
	control_showjob_free(c->show);
	ev_io_stop(backmxd.loop, &c->rio);
	ev_io_stop(backmxd.loop, &c->wio);
	ev_timer_stop(backmxd.loop, &c->timer);
	close(c->fd);
	json_buf_free(&c->out);
	free(c->dom);
	LIST_REMOVE(c, entry);
	control_nclients--;
	free(c);
}

static void
control_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct control_client *c;
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	int fd;

	fd = accept4(control_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		if (fdpause_after(loop, &control_accept_pause, errno))
			return;
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			log_warn("control: accept: %s", strerror(errno));
		return;
	}
	if (control_nclients >= CONTROL_CLIENTS_MAX ||
	    (c = calloc(1, sizeof(*c))) == NULL) {
		static const char busy[] = "-ERR too many control clients\n";

		log_warn("control: too many clients, one refused");
		if (write(fd, busy, sizeof(busy) - 1) < 0) {
			/* nothing more to do */
		}
		close(fd);
		return;
	}
	c->fd = fd;
	c->uid = -1;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0)
		c->uid = (long)cred.uid;
	json_buf_init(&c->out);
	ev_io_init(&c->rio, control_read_cb, fd, EV_READ);
	ev_io_init(&c->wio, control_write_cb, fd, EV_WRITE);
	ev_init(&c->timer, control_timer_cb);
	c->timer.repeat = CONTROL_REQUEST_TIMEOUT;
	c->rio.data = c->wio.data = c->timer.data = c;
	LIST_INSERT_HEAD(&control_clients, c, entry);
	control_nclients++;
	ev_io_start(loop, &c->rio);
	ev_timer_again(loop, &c->timer);
}

/* ------------------------------------------------------------------ */
/* the listening socket */

int
control_open(const struct config *cfg, char *err, size_t errlen)
{
	struct sockaddr_un sun;
	struct passwd *pw;
	struct stat st;
	char dir[sizeof(sun.sun_path)], *slash;
	mode_t old;
	int fd;

	if (cfg->control == NULL || cfg->control[0] == '\0') {
		snprintf(err, errlen, "control: no socket path");
		return -1;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(cfg->control) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "control %s: path too long",
		         cfg->control);
		return -1;
	}
	memcpy(sun.sun_path, cfg->control, strlen(cfg->control));

	snprintf(dir, sizeof(dir), "%s", cfg->control);
	if ((slash = strrchr(dir, '/')) != NULL && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
			snprintf(err, errlen, "control: mkdir %s: %s", dir,
			         strerror(errno));
			return -1;
		}
	}
	if (lstat(cfg->control, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen,
			         "control %s: exists and is not a socket",
			         cfg->control);
			return -1;
		}
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 &&
		    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
			close(fd);
			snprintf(err, errlen,
			         "control %s: another backmxd answers on it",
			         cfg->control);
			return -1;
		}
		if (fd >= 0)
			close(fd);
		if (unlink(cfg->control) < 0 && errno != ENOENT) {
			snprintf(err, errlen, "control %s: cannot remove: %s",
			         cfg->control, strerror(errno));
			return -1;
		}
	}

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "control: socket: %s", strerror(errno));
		return -1;
	}
	old = umask(0117);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		umask(old);
		snprintf(err, errlen, "control %s: bind: %s", cfg->control,
		         strerror(errno));
		close(fd);
		return -1;
	}
	umask(old);
	if (chmod(cfg->control, 0660) < 0)
		log_warn("control %s: chmod: %s", cfg->control,
		         strerror(errno));
	if (cfg->user != NULL && geteuid() == 0) {
		if ((pw = getpwnam(cfg->user)) == NULL) {
			snprintf(err, errlen, "control: no such user %s",
			         cfg->user);
			goto fail;
		}
		if (chown(cfg->control, pw->pw_uid, pw->pw_gid) < 0) {
			snprintf(err, errlen, "control %s: chown: %s",
			         cfg->control, strerror(errno));
			goto fail;
		}
	}
	if (listen(fd, 64) < 0) {
		snprintf(err, errlen, "control %s: listen: %s", cfg->control,
		         strerror(errno));
		goto fail;
	}
	snprintf(control_path, sizeof(control_path), "%s", cfg->control);
	control_fd = fd;
	return 0;
fail:
	close(fd);
	unlink(cfg->control);
	return -1;
}

void
control_start(void)
{
	pause_load(backmxd.cfg->spool);
	if (control_fd < 0)
		return;
	ev_io_init(&control_accept_io, control_accept_cb, control_fd, EV_READ);
	fdpause_init(&control_accept_pause, &control_accept_io, "control");
	ev_io_start(backmxd.loop, &control_accept_io);
}

void
control_close(void)
{
	struct control_client *c;

	while ((c = LIST_FIRST(&control_clients)) != NULL)
		control_client_free(c);
	if (control_fd < 0)
		return;
	ev_io_stop(backmxd.loop, &control_accept_io);
	fdpause_stop(backmxd.loop, &control_accept_pause);
	close(control_fd);
	control_fd = -1;
	if (control_path[0] != '\0')
		unlink(control_path);
}
