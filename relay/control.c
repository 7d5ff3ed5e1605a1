/*
 * control.c - the control socket server of backmxd (protocol in
 * control.h).  Owns the listening UNIX socket and its clients; every
 * client lives on the loop and never blocks it: listings stream from
 * spool_scan() in bounded batches, paced by the client's reading.
 * Calls forward.c for flush/hold/release/delete/bounce, checkdns.c for
 * check-dns, metrics.c for the counter table.  Every command is logged.
 */
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <ctype.h>
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
#include "forward.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "reload.h"
#include "stats.h"

#define CONTROL_CLIENTS_MAX 64
#define CONTROL_BATCH 64		/* envelopes per spool_scan call */
#define CONTROL_OUT_HIGH (64 * 1024)	/* stop reading the spool above */
#define CONTROL_REQUEST_TIMEOUT 10.	/* to send the request line */
#define CONTROL_IDLE_TIMEOUT 120.	/* without output progress */
#define CONTROL_HEADER_MAX (256 * 1024)

struct control_domstat {
	char name[POLICY_DOMAIN_MAX + 1];
	uint64_t msgs;
	int64_t oldest;		/* arrival, 0 = none */
	uint64_t seen;		/* serial of the last message counted */
};

struct control_client {
	LIST_ENTRY(control_client) entry;
	int fd;
	long uid;
	ev_io rio, wio;
	ev_timer timer;
	char in[CONTROL_LINE_MAX];
	size_t inlen;
	int have_request;
	struct control_request req;
	struct json_buf out;
	/* a streaming job: called while out is below CONTROL_OUT_HIGH */
	void (*produce)(struct control_client *);
	int ended;		/* the end line is in out */
	char after[SPOOL_ID_LEN + 1];
	uint64_t nmsgs, nbytes;
	int64_t now, oldest;
	int header_done;
	struct control_domstat *dom;
	size_t ndom;
	struct checkdns *cd;
};

static LIST_HEAD(, control_client) control_clients =
	LIST_HEAD_INITIALIZER(control_clients);
static int control_nclients;
static int control_fd = -1;
static ev_io control_accept_io;
static char control_path[sizeof(((struct sockaddr_un *)0)->sun_path)];

static void control_client_free(struct control_client *c);

/* ------------------------------------------------------------------ */
/* output */

static void
control_kick(struct control_client *c)
{
	ev_io_start(backmxd.loop, &c->wio);
}

static void
control_end_ok(struct control_client *c)
{
	json_buf_puts(&c->out, ".\n");
	c->ended = 1;
	c->produce = NULL;
	control_kick(c);
}

static void control_end_err(struct control_client *c, const char *fmt, ...)
	LOG_FMT(2, 3);

static void
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
static void control_line(struct control_client *c, const char *fmt, ...)
	LOG_FMT(2, 3);

static void
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

static const char *
control_state_name(int state)
{
	switch (state) {
	case SPOOL_RCPT_PENDING: return "pending";
	case SPOOL_RCPT_DELIVERED: return "delivered";
	case SPOOL_RCPT_FAILED: return "failed";
	}
	return "unknown";
}

static void
control_time(char *buf, size_t len, int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t <= 0 || localtime_r(&tt, &tm) == NULL)
		snprintf(buf, len, "-");
	else
		strftime(buf, len, "%b %d %H:%M:%S", &tm);
}

/* control_rcpt_in_domain - is a pending recipient of e at domain? */
static int
control_rcpt_in_domain(const struct spool_envelope *e, const char *domain)
{
	const char *at;
	int i;

	for (i = 0; i < e->nrcpt; i++) {
		if (e->rcpt[i].state != SPOOL_RCPT_PENDING ||
		    e->rcpt[i].address == NULL)
			continue;
		at = strrchr(e->rcpt[i].address, '@');
		if (at != NULL && strcasecmp(at + 1, domain) == 0)
			return 1;
	}
	return 0;
}

/* control_put_json - the queue --json object of e (no newline) */
static void
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
		json_buf_printf(b, ", \"state\": \"%s\", \"attempts\": %d, "
				   "\"next_attempt\": %lld, \"last_error\": ",
				control_state_name(r->state), r->attempts,
				(long long)r->next_attempt);
		json_put_cstring(b, r->last_error);
		json_buf_puts(b, "}");
	}
	json_buf_puts(b, "]");
}

/* control_put_human - the postqueue-like lines of e */
static void
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
				     r->address ? r->address : "",
				     r->attempts, r->attempts == 1 ? "" : "s",
				     when);
		} else
			control_line(c, "    %-9s %s  (%d attempt%s)",
				     control_state_name(r->state),
				     r->address ? r->address : "",
				     r->attempts, r->attempts == 1 ? "" : "s");
		if (r->last_error != NULL)
			control_line(c, "              %s", r->last_error);
	}
}

/* ------------------------------------------------------------------ */
/* queue [DOMAIN] */

static int
control_queue_one_cb(void *arg, const struct spool_envelope *e)
{
	struct control_client *c = arg;

	memcpy(c->after, e->id, sizeof(c->after));
	c->after[SPOOL_ID_LEN] = '\0';
	if (c->req.nargs > 0 && !control_rcpt_in_domain(e, c->req.args[0]))
		return 0;
	c->nmsgs++;
	c->nbytes += e->size;
	if (c->req.json) {
		json_buf_puts(&c->out, "+");
		control_put_json(&c->out, e);
		json_buf_puts(&c->out, "}\n");
		return 0;
	}
	if (!c->header_done) {
		control_line(c, "%-12s %9s  %-15s  %s", "ID", "SIZE", "ARRIVAL",
			     "SENDER / RECIPIENTS");
		c->header_done = 1;
	}
	control_put_human(c, e);
	return 0;
}

static void
control_queue_produce(struct control_client *c)
{
	int n;

	n = spool_scan(backmxd.spool, c->after, CONTROL_BATCH,
		       control_queue_one_cb, c);
	if (n < 0) {
		control_end_err(c, "spool: %s", spool_error(backmxd.spool));
		return;
	}
	if (n == CONTROL_BATCH)
		return;
	if (!c->req.json) {
		if (c->nmsgs == 0)
			control_line(c, "queue is empty");
		else
			control_line(c, "-- %llu KB in %llu message%s",
				     (unsigned long long)(c->nbytes + 1023) /
					     1024,
				     (unsigned long long)c->nmsgs,
				     c->nmsgs == 1 ? "" : "s");
	}
	log_info("control: queue domain=%s n=%llu uid=%ld",
		 c->req.nargs ? c->req.args[0] : "*",
		 (unsigned long long)c->nmsgs, c->uid);
	control_end_ok(c);
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
	const char *at;
	size_t k;
	int i;

	memcpy(c->after, e->id, sizeof(c->after));
	c->after[SPOOL_ID_LEN] = '\0';
	c->nmsgs++;
	c->nbytes += e->size;
	if (c->oldest == 0 || (e->arrival > 0 && e->arrival < c->oldest))
		c->oldest = e->arrival;
	for (i = 0; i < e->nrcpt; i++) {
		if (e->rcpt[i].state != SPOOL_RCPT_PENDING ||
		    e->rcpt[i].address == NULL ||
		    (at = strrchr(e->rcpt[i].address, '@')) == NULL ||
		    strlen(at + 1) > POLICY_DOMAIN_MAX)
			continue;
		for (k = 0; at[1 + k] != '\0'; k++)
			key.name[k] = (char)tolower((unsigned char)at[1 + k]);
		key.name[k] = '\0';
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
	int64_t age = c->oldest > 0 && c->now > c->oldest ? c->now - c->oldest
							  : 0;
	size_t i;

	spool_count(backmxd.spool, &msgs, &bytes);
	if (c->req.json) {
		json_buf_puts(&c->out, "+{");
		for (i = 0; i < metrics_ncounters; i++)
			json_buf_printf(&c->out, "\"%s\": %llu, ",
					metrics_counters[i].name,
					(unsigned long long)metrics_counter_value(
						&metrics_counters[i]));
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
			json_buf_printf(&c->out,
					": {\"messages\": %llu, "
					"\"oldest_age\": %lld}",
					(unsigned long long)d->msgs,
					(long long)(d->oldest > 0 &&
							    c->now > d->oldest
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
	control_line(c, "%-22s %llu", "spool_messages",
		     (unsigned long long)msgs);
	control_line(c, "%-22s %llu", "spool_bytes", (unsigned long long)bytes);
	control_line(c, "%-22s %lld", "oldest_message_age", (long long)age);
	if (spool_damage(backmxd.spool) != NULL)
		control_line(c, "%-22s %s (backmxctl ack-spool clears this)",
			     "spool_damage", spool_damage(backmxd.spool));
	for (i = 0; i < c->ndom; i++) {
		const struct control_domstat *d = &c->dom[i];

		control_line(c, "domain %-32s %llu queued, oldest %llds", d->name,
			     (unsigned long long)d->msgs,
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
/* show ID */

/* control_read_header - the message's header (up to the empty line) */
static int
control_read_header(const char *id, struct json_buf *h)
{
	const void *data;
	size_t len;
	uint32_t n;
	char *end;
	int r;

	for (n = 0; h->len < CONTROL_HEADER_MAX; n++) {
		if ((r = spool_body_read(backmxd.spool, id, n, &data, &len)) < 0)
			return -1;
		if (r == 0)
			break;
		json_buf_append(h, data, len);
		if (h->oom)
			return -1;
		if (h->len >= 2 && (memcmp(h->data, "\r\n", 2) == 0 ||
				    h->data[0] == '\n')) {
			h->len = 0;
			return 0;
		}
		if ((end = strstr(h->data, "\n\r\n")) != NULL ||
		    (end = strstr(h->data, "\n\n")) != NULL) {
			h->len = (size_t)(end - h->data) + 1;
			h->data[h->len] = '\0';
			return 0;
		}
	}
	if (h->len > CONTROL_HEADER_MAX)
		h->len = CONTROL_HEADER_MAX;
	if (h->data != NULL)
		h->data[h->len] = '\0';
	return 0;
}

static void
control_show(struct control_client *c)
{
	struct spool_envelope *e;
	struct json_buf h;
	char when[32];
	char *line, *next;
	int i;

	if ((e = spool_envelope_get(backmxd.spool, c->req.args[0])) == NULL) {
		if (spool_errno(backmxd.spool) == SPOOL_ENOTFOUND)
			control_end_err(c, "no such message %s",
					c->req.args[0]);
		else
			control_end_err(c, "spool: %s",
					spool_error(backmxd.spool));
		return;
	}
	json_buf_init(&h);
	if (control_read_header(e->id, &h) < 0) {
		control_end_err(c, "spool: cannot read the body of %s: %s", e->id,
				spool_error(backmxd.spool));
		goto done;
	}
	if (c->req.json) {
		json_buf_puts(&c->out, "+");
		control_put_json(&c->out, e);
		json_buf_puts(&c->out, ", \"client_addr\": ");
		json_put_cstring(&c->out, e->client_addr);
		json_buf_puts(&c->out, ", \"client_helo\": ");
		json_put_cstring(&c->out, e->client_helo);
		json_buf_puts(&c->out, ", \"envid\": ");
		json_put_cstring(&c->out, e->envid);
		json_buf_printf(&c->out,
				", \"ret\": %s, \"body\": \"%s\", "
				"\"smtputf8\": %s, \"is_bounce\": %s, "
				"\"header\": ",
				e->ret == SPOOL_RET_FULL   ? "\"FULL\""
				: e->ret == SPOOL_RET_HDRS ? "\"HDRS\""
							   : "null",
				e->body == SPOOL_BODY_8BITMIME	  ? "8BITMIME"
				: e->body == SPOOL_BODY_BINARYMIME ? "BINARYMIME"
								   : "7BIT",
				e->smtputf8 ? "true" : "false",
				e->is_bounce ? "true" : "false");
		json_put_string(&c->out, h.data ? h.data : "", h.len);
		json_buf_puts(&c->out, "}\n");
	} else {
		control_time(when, sizeof(when), e->arrival);
		control_line(c, "id:        %s%s", e->id,
			     e->held ? "  (held)" : "");
		control_line(c, "arrival:   %s (%lld)", when,
			     (long long)e->arrival);
		control_line(c, "size:      %llu", (unsigned long long)e->size);
		control_line(c, "sender:    <%s>%s", e->sender ? e->sender : "",
			     e->is_bounce ? "  (bounce)" : "");
		control_line(c, "client:    %s helo=%s",
			     e->client_addr ? e->client_addr : "-",
			     e->client_helo ? e->client_helo : "-");
		control_line(c, "dsn:       envid=%s ret=%s body=%s%s",
			     e->envid ? e->envid : "-",
			     e->ret == SPOOL_RET_FULL	? "FULL"
			     : e->ret == SPOOL_RET_HDRS ? "HDRS"
							: "-",
			     e->body == SPOOL_BODY_8BITMIME    ? "8BITMIME"
			     : e->body == SPOOL_BODY_BINARYMIME ? "BINARYMIME"
								: "7BIT",
			     e->smtputf8 ? " SMTPUTF8" : "");
		control_line(c, "recipients:");
		for (i = 0; i < e->nrcpt; i++) {
			const struct spool_rcpt *r = &e->rcpt[i];

			control_time(when, sizeof(when), r->next_attempt);
			control_line(c, "  %-9s %s  attempts=%d next=%s%s%s",
				     control_state_name(r->state),
				     r->address ? r->address : "", r->attempts,
				     r->state == SPOOL_RCPT_PENDING ? when : "-",
				     r->route ? " route=" : "",
				     r->route ? r->route : "");
			if (r->orcpt != NULL)
				control_line(c, "            orcpt=%s", r->orcpt);
			if (r->last_error != NULL)
				control_line(c, "            %s", r->last_error);
		}
		control_line(c, "header:");
		for (line = h.data; line != NULL && *line != '\0'; line = next) {
			if ((next = strchr(line, '\n')) != NULL)
				*next++ = '\0';
			if (next != NULL && next - line >= 2 && next[-2] == '\r')
				next[-2] = '\0';
			control_line(c, "  %s", line);
		}
	}
	log_info("control: show id=%s uid=%ld", e->id, c->uid);
	control_end_ok(c);
done:
	json_buf_free(&h);
	spool_envelope_free(e);
}

/* ------------------------------------------------------------------ */
/* flush, hold, release, delete, bounce */

static int
control_domain_known(struct control_client *c, const char *domain)
{
	if (policy_find_domain(backmxd.cfg->policy, domain) != NULL)
		return 1;
	control_end_err(c, "unknown domain %s", domain);
	return 0;
}

/* control_exists - 1 when the message is in the spool, else ends c */
static int
control_exists(struct control_client *c, const char *id)
{
	struct spool_envelope *e;

	if ((e = spool_envelope_get(backmxd.spool, id)) != NULL) {
		spool_envelope_free(e);
		return 1;
	}
	if (spool_errno(backmxd.spool) == SPOOL_ENOTFOUND)
		control_end_err(c, "no such message %s", id);
	else
		control_end_err(c, "spool: %s", spool_error(backmxd.spool));
	return 0;
}

static void
control_result(struct control_client *c, const char *verb, const char *what,
	       long n)
{
	if (c->req.json) {
		json_buf_printf(&c->out, "+{\"%s\": %ld}\n", verb, n);
	} else if (what != NULL)
		control_line(c, "%s %s", verb, what);
	else
		control_line(c, "%s %ld message%s", verb, n, n == 1 ? "" : "s");
	control_end_ok(c);
}

static void
control_flush(struct control_client *c)
{
	const char *domain = c->req.nargs ? c->req.args[0] : NULL;
	int n;

	if (domain != NULL && !control_domain_known(c, domain))
		return;
	n = forward_flush(domain);
	log_info("control: flush domain=%s n=%d uid=%ld",
		 domain ? domain : "*", n, c->uid);
	control_result(c, "flushed", NULL, n < 0 ? 0 : n);
}

static void
control_hold(struct control_client *c, int hold)
{
	const char *arg = c->req.args[0];
	const char *verb = hold ? "held" : "released";
	int n;

	if (c->req.arg_is_id) {
		if (!control_exists(c, arg))
			return;
	} else if (!control_domain_known(c, arg))
		return;
	n = forward_hold(arg, hold);
	log_info("control: %s %s=%s n=%d uid=%ld", hold ? "hold" : "release",
		 c->req.arg_is_id ? "id" : "domain", arg, n < 0 ? 0 : n,
		 c->uid);
	if (n < 0 && c->req.arg_is_id) {
		control_end_err(c, "no such message %s", arg);
		return;
	}
	control_result(c, verb, NULL, n < 0 ? 0 : n);
}

static void
control_remove(struct control_client *c, int bounce)
{
	const char *id = c->req.args[0];
	int r;

	if (!control_exists(c, id))
		return;
	r = bounce ? forward_bounce(id) : forward_delete(id);
	if (r < 0) {
		log_warn("control: %s id=%s failed: %s uid=%ld",
			 bounce ? "bounce" : "delete", id,
			 spool_error(backmxd.spool), c->uid);
		control_end_err(c, "cannot %s %s: %s", bounce ? "bounce" : "delete",
				id, spool_error(backmxd.spool));
		return;
	}
	log_info("control: %s id=%s uid=%ld", bounce ? "bounce" : "delete", id,
		 c->uid);
	if (c->req.json) {
		json_buf_printf(&c->out, "+{\"%s\": \"%s\"}\n",
				bounce ? "bounced" : "deleted", id);
		control_end_ok(c);
	} else
		control_result(c, bounce ? "bounced" : "deleted", id, 1);
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
		control_line(c, "%-4s %s: %s", level,
			     check ? check : "", text ? text : "");
	ev_timer_again(backmxd.loop, &c->timer);
	control_kick(c);
}

static void
control_checkdns_done_cb(void *arg, int nfail)
{
	struct control_client *c = arg;

	c->cd = NULL;
	log_info("control: check-dns domain=%s fail=%d uid=%ld",
		 c->req.args[0], nfail, c->uid);
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

	if (control_request_parse(c->in, c->inlen, &c->req, err,
				  sizeof(err)) < 0) {
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
		c->produce = control_queue_produce;
		break;
	case CONTROL_SHOW:
		control_show(c);
		break;
	case CONTROL_FLUSH:
		control_flush(c);
		break;
	case CONTROL_HOLD:
		control_hold(c, 1);
		break;
	case CONTROL_RELEASE:
		control_hold(c, 0);
		break;
	case CONTROL_DELETE:
		control_remove(c, 0);
		break;
	case CONTROL_BOUNCE:
		control_remove(c, 1);
		break;
	case CONTROL_STATS:
		control_stats_start(c);
		break;
	case CONTROL_CHECK_DNS:
		control_check_dns(c);
		break;
	case CONTROL_RELOAD:
		control_reload(c);
		break;
	case CONTROL_ACK_SPOOL:
		control_ack_spool(c);
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
			ev_io_stop(loop, &c->wio);	/* check-dns pending */
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
		if (errno != EAGAIN && errno != EINTR &&
		    errno != ECONNABORTED)
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
		snprintf(err, errlen, "control %s: path too long", cfg->control);
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
	if (control_fd < 0)
		return;
	ev_io_init(&control_accept_io, control_accept_cb, control_fd,
		   EV_READ);
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
	close(control_fd);
	control_fd = -1;
	if (control_path[0] != '\0')
		unlink(control_path);
}
