/*
 * milter.c - the milter client on the loop (milter.h): one connection
 * per milter for the whole SMTP session, its explicit state (MC_NEG,
 * MC_READY, MC_DONE, MC_DEAD, milter_int.h), its non-blocking I/O and
 * timers, and the command stages (connect, HELO, MAIL, RCPT, DATA) run
 * over the milters in order; SMFIC_ABORT between transactions and
 * SMFIC_QUIT at the end.  The message stage is milter_msg.c's.
 *
 * Called by smtpd_milter.c; uses milter_proto.c for framing, cfg->filter
 * for the milters, milter_timeout and milter_default_action.
 *
 * At a stage each milter in turn is sent the stage's macros and command
 * (unless it asked to skip it, SMFIP_NO*) and, unless it said it will
 * not reply (SMFIP_NR*), its reply is awaited, bounded by milter_timeout:
 * continue asks the next one, accept ends that milter's part of the
 * connection (at connect/HELO) or of the message (later), reject and
 * tempfail (and SMFIR_REPLYCODE's own text) end the stage with that
 * reply, discard marks the message to be dropped at its end.  A milter
 * that fails is dead for the session: at each later stage
 * milter_default_action stands for its answer.  Callbacks never run
 * inside milter_stage()/milter_message().
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config_filter.h"
#include "log.h"
#include "milter_int.h"

static void milter_stage_next(struct milter_sess *ms);

/* ------------------------------------------------------------------ */
/* output */

int
milter_put(struct milter_conn *c, char cmd, const void *p1, size_t n1,
           const void *p2, size_t n2)
{
	size_t n = 5 + n1 + n2;
	uint32_t len = htonl((uint32_t)(1 + n1 + n2));

	if (c->outlen + n > c->outcap) {
		size_t cap = c->outcap ? c->outcap : 4096;
		unsigned char *o;

		while (cap < c->outlen + n)
			cap *= 2;
		if ((o = realloc(c->out, cap)) == NULL)
			return -1;
		c->out = o;
		c->outcap = cap;
	}
	memcpy(c->out + c->outlen, &len, 4);
	c->out[c->outlen + 4] = (unsigned char)cmd;
	if (n1)
		memcpy(c->out + c->outlen + 5, p1, n1);
	if (n2)
		memcpy(c->out + c->outlen + 5 + n1, p2, n2);
	c->outlen += n;
	return 0;
}

void
milter_macros(struct milter_conn *c, char stage)
{
	const struct config *cfg = backmxd.cfg;
	const struct milter_sess *ms = c->ms;
	char port[16], underscore[400];
	const char *v[40];
	int n = 1; /* v[0] unused */

	switch (stage) {
	case 'C':
		snprintf(port, sizeof(port), "%d", ms->client_port);
		snprintf(underscore, sizeof(underscore), "%s [%s]",
		         ms->client_name, ms->client_addr);
		v[n++] = "j", v[n++] = cfg->hostname;
		v[n++] = "{daemon_name}", v[n++] = "backmx";
		v[n++] = "{if_name}", v[n++] = cfg->hostname;
		v[n++] = "{client_addr}", v[n++] = ms->client_addr;
		v[n++] = "{client_port}", v[n++] = port;
		v[n++] = "{client_name}", v[n++] = ms->client_name;
		v[n++] = "{client_ptr}", v[n++] = ms->client_name;
		v[n++] = "_", v[n++] = underscore;
		v[n++] = "v", v[n++] = "backmx " BACKMX_VERSION;
		break;
	case 'H':
		v[n++] = "{tls_version}", v[n++] = ms->tls_version;
		break;
	case 'M':
		v[n++] = "{mail_addr}", v[n++] = ms->argraw;
		v[n++] = "{auth_authen}", v[n++] = "";
		v[n++] = "{auth_type}", v[n++] = "";
		break;
	case 'R':
		v[n++] = "{rcpt_addr}", v[n++] = ms->argraw;
		break;
	default:
		if (ms->queue_id[0] == '\0')
			return;
		v[n++] = "i", v[n++] = ms->queue_id;
		break;
	}
	/* "D", the stage's command octet, then name\0value\0 pairs */
	char buf[8192];
	size_t o = 1;

	buf[0] = stage;
	for (int i = 1; i < n; i++) {
		size_t l = strlen(v[i]) + 1;

		if (o + l > sizeof(buf))
			return;
		memcpy(buf + o, v[i], l);
		o += l;
	}
	milter_put(c, 'D', buf, o, NULL, 0);
}

/* ------------------------------------------------------------------ */
/* connection */

static void
milter_conn_close(struct milter_conn *c)
{
	ev_io_stop(backmxd.loop, &c->rio);
	ev_io_stop(backmxd.loop, &c->wio);
	ev_timer_stop(backmxd.loop, &c->timer);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->outlen = c->inlen = 0;
	c->waiting = 0;
}

const char *
milter_verdict_outcome(enum milter_verdict v)
{
	static const char *const names[] = {
	    [MILTER_CONTINUE] = "accepted",
	    [MILTER_DISCARD] = "discarded",
	    [MILTER_QUARANTINE] = "quarantined",
	    [MILTER_TEMPFAIL] = "tempfailed",
	    [MILTER_REJECT] = "rejected",
	};

	return names[v];
}

void
milter_account(struct milter_conn *c, const char *queue_id, const char *outcome)
{
	if (c->accounted)
		return;
	c->accounted = 1;
	log_msg(queue_id[0] ? queue_id : "NOQUEUE",
	        "milter %s: %s, waited %.3fs", c->spec, outcome, c->wait);
	milter_metrics_record(c->spec, c->wait, outcome);
}

int
milter_default(struct milter_reply *r, const char *spec, const char *why)
{
	const struct config_filter *f = backmxd.cfg->filter;

	if (f->milter_default_action == FILTER_ACCEPT)
		return 0;
	if (f->milter_default_action == FILTER_TEMPFAIL) {
		r->verdict = MILTER_TEMPFAIL;
		snprintf(r->reply, sizeof(r->reply),
		         "451 4.7.1 Service unavailable - try again later");
	} else {
		r->verdict = MILTER_REJECT;
		snprintf(r->reply, sizeof(r->reply),
		         "550 5.7.1 Command rejected");
	}
	snprintf(r->why, sizeof(r->why),
	         "milter %.60s: %.120s; milter_default_action=%s", spec, why,
	         config_filter_action_str(f->milter_default_action));
	return 1;
}

void
milter_conn_fail(struct milter_conn *c, const char *why)
{
	struct milter_sess *ms = c->ms;
	int current = ms->stage != ST_IDLE && ms->cur == c->idx && c->waiting;

	stats.milter_failed++;
	log_warn("%s: milter %s: %s; milter_default_action=%s",
	         ms->queue_id[0] ? ms->queue_id : "NOQUEUE", c->spec, why,
	         config_filter_action_str(
	             backmxd.cfg->filter->milter_default_action));
	milter_conn_close(c);
	c->state = MC_DEAD;
	snprintf(c->refused, sizeof(c->refused), "%.200s", why);
	milter_account(c, ms->queue_id, "failed");
	if (ms->stage == ST_IDLE)
		return;
	if (ms->stage == ST_MESSAGE) {
		if (ms->cur == c->idx)
			milter_msg_failed(c, why);
		return;
	}
	if (current || (ms->stage == ST_CONNECT && ms->cur == c->idx))
		milter_stage_next(ms); /* it now answers by default */
}

/* milter_stage_reply - a reply to a command stage: 1 answered, 0 read
 * on, -1 garbage */
static int
milter_stage_reply(struct milter_conn *c, char cmd, const unsigned char *d,
                   size_t dl)
{
	struct milter_sess *ms = c->ms;
	struct milter_reply *r = &ms->rep;
	char text[512];

	switch (cmd) {
	case 'c':
		return 1;
	case 'a':
		if (ms->stage == ST_CONNECT || ms->stage == ST_HELO)
			c->state = MC_DONE; /* the whole connection */
		else
			c->tx_done = 1; /* this message */
		return 1;
	case 'd':
		if (ms->stage >= ST_MAIL) {
			ms->discard = 1;
			c->tx_done = 1;
			snprintf(ms->discard_why, sizeof(ms->discard_why),
			         "milter %.60s: discard at %s", c->spec,
			         ms->stage == ST_MAIL   ? "MAIL"
			         : ms->stage == ST_RCPT ? "RCPT"
			                                : "DATA");
		}
		return 1;
	case 'r':
	case 't':
	case 'y':
		if (milter_reply_text(cmd, d, dl, text, sizeof(text)) < 0)
			return -1;
		r->verdict = text[0] == '5' ? MILTER_REJECT : MILTER_TEMPFAIL;
		r->custom = cmd == 'y';
		r->close = strncmp(text, "421", 3) == 0;
		snprintf(r->reply, sizeof(r->reply), "%s", text);
		snprintf(r->why, sizeof(r->why), "milter %.60s", c->spec);
		if (ms->stage == ST_CONNECT && !r->close &&
		    r->verdict == MILTER_TEMPFAIL) {
			/* the session goes on; its MAIL commands get this */
			snprintf(c->refused, sizeof(c->refused), "%s", text);
			r->verdict = MILTER_CONTINUE;
			return 1;
		}
		return 2; /* the stage ends with this verdict */
	}
	return -1;
}

static void
milter_optneg_reply(struct milter_conn *c, char cmd, const unsigned char *d,
                    size_t dl)
{
	uint32_t v[3];

	if (cmd != 'O' || dl < 12) {
		milter_conn_fail(c, "bad answer to option negotiation");
		return;
	}
	memcpy(v, d, 12);
	if (ntohl(v[0]) < 2) {
		milter_conn_fail(c, "milter protocol version below 2");
		return;
	}
	c->actions = ntohl(v[1]) & MILTER_ACTIONS;
	c->proto = ntohl(v[2]);
	/* the macro lists that may follow are not needed: every macro we
	 * have is sent at its stage */
	c->state = MC_READY;
}

/* milter_answered - the owed reply came: account its wait */
static void
milter_answered(struct milter_conn *c)
{
	double w = ev_now(backmxd.loop) - c->sent_at;

	stats.milter_replies++;
	stats.milter_latency_ms += (uint64_t)(w * 1000);
	c->wait += w;
	c->waiting = 0;
	ev_io_stop(backmxd.loop, &c->rio);
	ev_timer_stop(backmxd.loop, &c->timer);
}

static void
milter_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct milter_conn *c = w->data;
	struct milter_sess *ms = c->ms;
	ssize_t n;

	if (c->inlen == c->incap) {
		size_t cap = c->incap ? c->incap * 2 : 4096;
		unsigned char *p;

		if (cap > MILTER_PACKET_MAX + 8 ||
		    (p = realloc(c->in, cap)) == NULL) {
			milter_conn_fail(c, "reply too long");
			return;
		}
		c->in = p;
		c->incap = cap;
	}
	n = recv(c->fd, c->in + c->inlen, c->incap - c->inlen, 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		milter_conn_fail(c, n == 0 ? "connection closed"
		                           : strerror(errno));
		return;
	}
	c->inlen += n;
	for (;;) {
		const unsigned char *d;
		size_t dl;
		char cmd;
		int k = milter_packet_parse(c->in, c->inlen, &cmd, &d, &dl);
		int rc, neg = 0;

		if (k == 0)
			return;
		if (k < 0) {
			milter_conn_fail(c,
			                 "garbage reply (bad packet length)");
			return;
		}
		if (!c->waiting) {
			milter_conn_fail(c, "reply nobody asked for");
			return;
		}
		if (cmd == 'p') { /* progress: wait on, bounded */
			double t = backmxd.cfg->filter->milter_timeout;

			if (ev_now(loop) - c->sent_at >
			    MILTER_PROGRESS_FACTOR * t) {
				milter_conn_fail(c, "only progress replies for "
				                    "10 x milter_timeout");
				return;
			}
			ev_timer_again(loop, &c->timer);
			rc = 0;
		} else if (c->state == MC_NEG) {
			milter_optneg_reply(c, cmd, d, dl);
			if (c->state != MC_READY)
				return;
			rc = neg = 1;
		} else if (ms->stage == ST_MESSAGE && ms->cur == c->idx)
			rc = milter_msg_reply(c, cmd, d, dl);
		else if (ms->stage != ST_IDLE && ms->stage != ST_MESSAGE &&
		         ms->cur == c->idx)
			rc = milter_stage_reply(c, cmd, d, dl);
		else
			rc = -1;
		memmove(c->in, c->in + k, c->inlen - k);
		c->inlen -= k;
		if (rc < 0) {
			char why[96];

			if (c->bad != NULL)
				snprintf(why, sizeof(why), "%s", c->bad);
			else
				snprintf(why, sizeof(why),
				         "unexpected reply '%c'",
				         cmd >= 0x20 && cmd < 0x7f ? cmd : '?');
			milter_conn_fail(c, why);
			return;
		}
		if (rc == 0)
			continue;
		milter_answered(c);
		if (c->inlen > 0) {
			milter_conn_fail(c, "more replies than asked for");
			return;
		}
		if (neg) {
			/* the connect stage may be waiting for it */
			if (ms->stage == ST_CONNECT && ms->cur == c->idx)
				milter_stage_next(ms);
			return;
		}
		if (ms->stage == ST_MESSAGE) {
			milter_msg_next(ms);
			return;
		}
		if (rc == 2) {
			/* the stage ends with this milter's verdict */
			struct milter_reply rep = ms->rep;

			if (rep.verdict == MILTER_REJECT)
				stats.milter_rejected++;
			else
				stats.milter_tempfailed++;
			if (ms->stage != ST_RCPT) /* else the tx goes on */
				milter_account(
				    c, ms->queue_id,
				    milter_verdict_outcome(rep.verdict));
			ms->stage = ST_IDLE;
			ms->cb(ms->cbarg, &rep); /* may free ms */
			return;
		}
		ms->cur++;
		milter_stage_next(ms);
		return;
	}
}

static void
milter_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct milter_conn *c = w->data;

	while (c->outlen > 0) {
		ssize_t n = send(c->fd, c->out, c->outlen, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return;
			milter_conn_fail(c, strerror(errno));
			return;
		}
		memmove(c->out, c->out + n, c->outlen - n);
		c->outlen -= n;
	}
	ev_io_stop(loop, &c->wio);
	if (c->waiting)
		ev_io_start(loop, &c->rio);
	else
		ev_timer_stop(loop, &c->timer);
}

static void
milter_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct milter_conn *c = w->data;

	if (c->fd < 0) { /* connect() failed at once */
		char why[sizeof(c->refused)];

		snprintf(why, sizeof(why), "%s", c->refused);
		milter_conn_fail(c, why);
		return;
	}
	milter_conn_fail(c, c->state == MC_NEG
	                        ? "no answer to option negotiation"
	                    : c->waiting ? "timeout"
	                                 : "write timeout");
}

void
milter_send(struct milter_conn *c, int want_reply)
{
	c->waiting = want_reply;
	c->sent_at = ev_now(backmxd.loop);
	ev_timer_set(&c->timer, 0., backmxd.cfg->filter->milter_timeout);
	ev_timer_again(backmxd.loop, &c->timer);
	ev_io_start(backmxd.loop, &c->wio);
}

static void
milter_conn_open(struct milter_conn *c)
{
	uint32_t v[3];

	c->state = MC_NEG;
	c->fd = socket(c->ss.ss_family,
	               SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	ev_io_init(&c->rio, milter_read_cb, c->fd, EV_READ);
	ev_io_init(&c->wio, milter_write_cb, c->fd, EV_WRITE);
	c->rio.data = c->wio.data = c;
	ev_init(&c->timer, milter_timer_cb);
	c->timer.data = c;
	if (c->fd < 0 ||
	    (connect(c->fd, (const struct sockaddr *)&c->ss, c->sslen) < 0 &&
	     errno != EINPROGRESS)) {
		/* reported from the timer, never inside the caller */
		snprintf(c->refused, sizeof(c->refused), "connect: %s",
		         strerror(errno));
		if (c->fd >= 0)
			close(c->fd);
		c->fd = -1;
		c->waiting = 1;
		ev_timer_set(&c->timer, 0., 0.);
		ev_timer_start(backmxd.loop, &c->timer);
		return;
	}
	v[0] = htonl(6);
	v[1] = htonl(MILTER_ACTIONS);
	v[2] = htonl(MILTER_PROTOCOL);
	milter_put(c, 'O', v, sizeof(v), NULL, 0);
	milter_send(c, 1);
}

/* ------------------------------------------------------------------ */
/* the command stages */

/* milter_stage_event - queue event cmd (its macros first) with n octets
 * of data, unless c asked to skip it (flag no): 0 when skipped, else 1
 * (2: and c will not reply, flag nr) */
static int
milter_stage_event(struct milter_conn *c, char cmd, const void *data, size_t n,
                   uint32_t no, uint32_t nr)
{
	if (c->proto & no)
		return 0;
	milter_macros(c, cmd);
	milter_put(c, cmd, data, n, NULL, 0);
	return c->proto & nr ? 2 : 1;
}

/* milter_stage_packets - queue the stage's event for c; 0 when c asked
 * to skip it, else 1 (2: and it will not reply) */
static int
milter_stage_packets(struct milter_conn *c)
{
	struct milter_sess *ms = c->ms;
	char buf[700];
	size_t o;

	switch (ms->stage) {
	case ST_CONNECT: {
		uint16_t port = htons((uint16_t)ms->client_port);

		o = snprintf(buf, sizeof(buf), "%s", ms->client_name) + 1;
		buf[o++] = ms->client_family == AF_INET6 ? '6' : '4';
		memcpy(buf + o, &port, 2);
		o += 2;
		o += snprintf(buf + o, sizeof(buf) - o, "%s", ms->client_addr) +
		     1;
		return milter_stage_event(c, 'C', buf, o, SMFIP_NOCONNECT,
		                          SMFIP_NR_CONN);
	}
	case ST_HELO:
		return milter_stage_event(c, 'H', ms->arg, strlen(ms->arg) + 1,
		                          SMFIP_NOHELO, SMFIP_NR_HELO);
	case ST_MAIL:
		c->in_tx = 1;
		return milter_stage_event(c, 'M', ms->arg, strlen(ms->arg) + 1,
		                          SMFIP_NOMAIL, SMFIP_NR_MAIL);
	case ST_RCPT:
		return milter_stage_event(c, 'R', ms->arg, strlen(ms->arg) + 1,
		                          SMFIP_NORCPT, SMFIP_NR_RCPT);
	case ST_DATA:
		c->data_sent = 1;
		return milter_stage_event(c, 'T', NULL, 0, SMFIP_NODATA,
		                          SMFIP_NR_DATA);
	default:
		return 0;
	}
}

/*
 * milter_stage_run - ask the milters from ms->cur on; 1 when waiting
 * for one, 0 when the stage is answered (ms->rep).
 */
static int
milter_stage_run(struct milter_sess *ms)
{
	for (; ms->cur < ms->n; ms->cur++) {
		struct milter_conn *c = &ms->c[ms->cur];
		int k;

		if (c->state == MC_DEAD) {
			if (ms->stage < ST_MAIL)
				continue; /* refused from MAIL on, not before */
			if (milter_default(&ms->rep, c->spec, c->refused))
				return 0;
			continue;
		}
		if (c->state == MC_DONE)
			continue;
		if (c->state == MC_NEG) {
			if (ms->stage == ST_CONNECT)
				return 1; /* its option negotiation first */
			continue;         /* cannot happen: connect waits */
		}
		if (ms->stage >= ST_MAIL && c->refused[0] != '\0') {
			ms->rep.verdict = c->refused[0] == '5'
			                      ? MILTER_REJECT
			                      : MILTER_TEMPFAIL;
			snprintf(ms->rep.reply, sizeof(ms->rep.reply), "%s",
			         c->refused);
			snprintf(ms->rep.why, sizeof(ms->rep.why),
			         "milter %.60s: %.150s (at connect)", c->spec,
			         c->refused);
			return 0;
		}
		if (ms->stage >= ST_MAIL && c->tx_done)
			continue;
		if ((k = milter_stage_packets(c)) == 0)
			continue;
		milter_send(c, k == 1);
		if (k == 1)
			return 1;
	}
	return 0;
}

static void
milter_stage_next(struct milter_sess *ms)
{
	struct milter_reply rep;

	if (milter_stage_run(ms))
		return;
	rep = ms->rep;
	if (rep.verdict == MILTER_REJECT)
		stats.milter_rejected++;
	else if (rep.verdict == MILTER_TEMPFAIL)
		stats.milter_tempfailed++;
	ms->stage = ST_IDLE;
	ms->cb(ms->cbarg, &rep); /* may free ms */
}

int
milter_stage(struct milter_sess *ms, enum milter_stage st, const char *arg,
             milter_reply_cb cb, void *cbarg, struct milter_reply *out)
{
	memset(&ms->rep, 0, sizeof(ms->rep));
	ms->stage = (enum ms_stage)st;
	ms->cur = 0;
	ms->cb = cb;
	ms->cbarg = cbarg;
	ms->arg[0] = ms->argraw[0] = '\0';
	switch (st) {
	case MILTER_ST_HELO:
		snprintf(ms->helo, sizeof(ms->helo), "%s", arg);
		snprintf(ms->arg, sizeof(ms->arg), "%s", arg);
		break;
	case MILTER_ST_MAIL:
		milter_tx_end(ms);
		ms->queue_id[0] = '\0';
		/* fall through */
	case MILTER_ST_RCPT:
		snprintf(ms->arg, sizeof(ms->arg), "<%s>", arg);
		snprintf(ms->argraw, sizeof(ms->argraw), "%s", arg);
		break;
	default:
		break;
	}
	if (st == MILTER_ST_MAIL)
		for (int i = 0; i < ms->n; i++) {
			ms->c[i].wait = 0;
			ms->c[i].accounted = 0;
		}
	if (milter_stage_run(ms)) {
		return 1;
	}
	*out = ms->rep;
	if (out->verdict == MILTER_REJECT)
		stats.milter_rejected++;
	else if (out->verdict == MILTER_TEMPFAIL)
		stats.milter_tempfailed++;
	ms->stage = ST_IDLE;
	return 0;
}

/* ------------------------------------------------------------------ */
/* the session */

struct milter_sess *
milter_session_new(const struct milter_client *cl)
{
	const struct config_filter *f = backmxd.cfg->filter;
	struct milter_sess *ms;

	if (f == NULL || f->nmilter == 0)
		return NULL;
	if ((ms = calloc(1, sizeof(*ms))) == NULL ||
	    (ms->c = calloc(f->nmilter, sizeof(*ms->c))) == NULL) {
		free(ms);
		return NULL;
	}
	ms->n = f->nmilter;
	snprintf(ms->client_addr, sizeof(ms->client_addr), "%s",
	         cl->client_addr);
	snprintf(ms->client_name, sizeof(ms->client_name), "%s",
	         cl->client_name);
	ms->client_port = cl->client_port;
	ms->client_family = cl->client_family;
	for (int i = 0; i < ms->n; i++) {
		struct milter_conn *c = &ms->c[i];

		c->ms = ms;
		c->idx = i;
		c->fd = -1;
		snprintf(c->spec, sizeof(c->spec), "%s", f->milter[i].spec);
		c->ss = f->milter[i].ss;
		c->sslen = f->milter[i].sslen;
		milter_conn_open(c);
	}
	return ms;
}

void
milter_session_tls(struct milter_sess *ms, const char *tls_version)
{
	if (ms != NULL)
		snprintf(ms->tls_version, sizeof(ms->tls_version), "%s",
		         tls_version ? tls_version : "");
}

void
milter_tx_end(struct milter_sess *ms)
{
	if (ms == NULL)
		return;
	if (ms->mr != NULL) {
		/* cancelled in the middle of the message: the milter being
		 * asked is out of step, it cannot be used again */
		if (ms->cur < ms->n && ms->c[ms->cur].waiting) {
			milter_conn_close(&ms->c[ms->cur]);
			ms->c[ms->cur].state = MC_DEAD;
			snprintf(ms->c[ms->cur].refused,
			         sizeof(ms->c[ms->cur].refused),
			         "cancelled during the message");
		}
		milter_msg_free(ms->mr);
		ms->mr = NULL;
		ms->stage = ST_IDLE;
	}
	for (int i = 0; i < ms->n; i++) {
		struct milter_conn *c = &ms->c[i];

		if (c->state == MC_READY && c->in_tx && !c->waiting) {
			milter_put(c, 'A', NULL, 0, NULL, 0);
			milter_send(c, 0);
		}
		c->in_tx = c->data_sent = c->tx_done = 0;
	}
	ms->discard = 0;
}

void
milter_session_free(struct milter_sess *ms)
{
	if (ms == NULL)
		return;
	if (ms->mr != NULL)
		milter_msg_free(ms->mr);
	for (int i = 0; i < ms->n; i++) {
		struct milter_conn *c = &ms->c[i];

		if (c->fd >= 0 && c->state != MC_NEG) {
			/* best effort: whatever is queued, then QUIT */
			milter_put(c, 'Q', NULL, 0, NULL, 0);
			(void)!send(c->fd, c->out, c->outlen,
			            MSG_NOSIGNAL | MSG_DONTWAIT);
		}
		milter_conn_close(c);
		free(c->out);
		free(c->in);
	}
	free(ms->c);
	free(ms);
}
