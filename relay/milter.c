/*
 * milter.c - the milter client on the loop (milter.h).
 *
 * Called by smtpd_milter.c at the end of a message; uses milter_proto.c for
 * framing, cfg->filter for the milters, milter_timeout and
 * milter_default_action.  One connection per milter per message, the
 * milters one after another: the header and body edits of one are
 * applied (milter_apply_file) before the next sees the message; the
 * recipient changes are applied by smtpd_milter.c at the end.  Each
 * milter's wait and outcome are logged and counted (milter_metrics.c).
 * Steps the milter asked
 * to skip (SMFIP_NO*) are not sent, replies it will not give (SMFIP_NR*)
 * are not waited for.  A callback never runs inside milter_run().
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "backmxd.h"
#include "config_filter.h"
#include "log.h"
#include "milter.h"

/* protocol constants (libmilter's mfdef.h values) */
#define SMFIF_ADDHDRS 0x01
#define SMFIF_CHGBODY 0x02
#define SMFIF_ADDRCPT 0x04
#define SMFIF_DELRCPT 0x08
#define SMFIF_CHGHDRS 0x10
#define SMFIF_QUARANTINE 0x20
#define SMFIF_CHGFROM 0x40
#define SMFIF_ADDRCPT_PAR 0x80
#define MILTER_ACTIONS 0xff

#define SMFIP_NOCONNECT 0x1
#define SMFIP_NOHELO 0x2
#define SMFIP_NOMAIL 0x4
#define SMFIP_NORCPT 0x8
#define SMFIP_NOBODY 0x10
#define SMFIP_NOHDRS 0x20
#define SMFIP_NOEOH 0x40
#define SMFIP_NR_HDR 0x80
#define SMFIP_NOUNKNOWN 0x100
#define SMFIP_NODATA 0x200
#define SMFIP_SKIP 0x400
#define SMFIP_RCPT_REJ 0x800
#define SMFIP_NR_CONN 0x1000
#define SMFIP_NR_HELO 0x2000
#define SMFIP_NR_MAIL 0x4000
#define SMFIP_NR_RCPT 0x8000
#define SMFIP_NR_DATA 0x10000
#define SMFIP_NR_EOH 0x40000
#define SMFIP_NR_BODY 0x80000
#define SMFIP_HDR_LEADSPC 0x100000
#define MILTER_PROTOCOL 0x1fffff

#define MILTER_HDRS_MAX (1024 * 1024)
/* what one hostile milter can make us hold at end of message: at most
 * MILTER_MODS_MAX header/recipient modifications of MILTER_HDRS_MAX
 * octets in all, a replacement body of at most max_size, and progress
 * replies for at most MILTER_PROGRESS_TIMES x milter_timeout per reply */
#define MILTER_MODS_MAX 1000
#define MILTER_PROGRESS_TIMES 10

enum milter_step {
	MS_OPTNEG, MS_CONNECT, MS_HELO, MS_MAIL, MS_RCPT, MS_DATA,
	MS_HEADER, MS_EOH, MS_BODY, MS_EOM, MS_DONE,
};

struct milter_hdr {
	char *name, *value;
};

struct milter_run {
	struct milter_msg m;
	milter_cb cb;
	void *arg;
	struct milter_result res;
	/* the message's header, parsed once */
	struct milter_hdr *hdrs;
	int nhdrs;
	long body_off;
	/* the current milter */
	int idx;
	const struct config_milter *cm;
	int fd;
	ev_io rio, wio;
	ev_timer timer;
	enum milter_step step;
	int sub;		/* recipient / header index within a step */
	int body_done, skip_body;
	uint32_t actions, proto;
	int waiting;		/* a reply is owed */
	double sent_at;
	double wait;			/* this milter's reply waits, seconds */
	int nmods;			/* this milter's modifications ... */
	size_t mods_len;		/* ... their octets */
	uint64_t body_len;		/* its replacement body's octets */
	const char *bad;		/* why its last reply was refused */
	enum milter_verdict own;	/* what this milter said */
	int failed;			/* ... or it failed */
	FILE *own_data;			/* the message as edited so far */
	unsigned char *out;
	size_t outlen, outcap;
	unsigned char *in;
	size_t inlen, incap;
};

static void milter_next(struct milter_run *r);
static void milter_conn_start(struct milter_run *r);

/* ------------------------------------------------------------------ */
/* output */

static int
milter_put(struct milter_run *r, char cmd, const void *p1, size_t n1,
	   const void *p2, size_t n2)
{
	size_t n = 5 + n1 + n2;
	uint32_t len = htonl((uint32_t)(1 + n1 + n2));

	if (r->outlen + n > r->outcap) {
		size_t cap = r->outcap ? r->outcap : 4096;
		unsigned char *o;

		while (cap < r->outlen + n)
			cap *= 2;
		if ((o = realloc(r->out, cap)) == NULL)
			return -1;
		r->out = o;
		r->outcap = cap;
	}
	memcpy(r->out + r->outlen, &len, 4);
	r->out[r->outlen + 4] = (unsigned char)cmd;
	if (n1)
		memcpy(r->out + r->outlen + 5, p1, n1);
	if (n2)
		memcpy(r->out + r->outlen + 5 + n1, p2, n2);
	r->outlen += n;
	return 0;
}

/* milter_macros - every macro we know, before the command stage */
static void
milter_macros(struct milter_run *r, char stage)
{
	const struct config *cfg = backmxd.cfg;
	const struct milter_msg *m = &r->m;
	char port[16], underscore[300];
	const char *v[40];
	int n = 1;	/* v[0] unused */

	switch (stage) {
	case 'C':
		snprintf(port, sizeof(port), "%d", m->client_port);
		snprintf(underscore, sizeof(underscore), "%s [%s]",
			 m->client_name, m->client_addr);
		v[n++] = "j", v[n++] = cfg->hostname;
		v[n++] = "{daemon_name}", v[n++] = "backmx";
		v[n++] = "{if_name}", v[n++] = cfg->hostname;
		v[n++] = "{client_addr}", v[n++] = m->client_addr;
		v[n++] = "{client_port}", v[n++] = port;
		v[n++] = "{client_name}", v[n++] = m->client_name;
		v[n++] = "{client_ptr}", v[n++] = m->client_name;
		v[n++] = "_", v[n++] = underscore;
		v[n++] = "v", v[n++] = "backmx " BACKMX_VERSION;
		break;
	case 'H':
		v[n++] = "{tls_version}", v[n++] = m->tls_version ? m->tls_version : "";
		v[n++] = "{cipher}", v[n++] = m->cipher ? m->cipher : "";
		break;
	case 'M':
		v[n++] = "i", v[n++] = m->queue_id;
		v[n++] = "{mail_addr}", v[n++] = m->sender;
		v[n++] = "{auth_authen}", v[n++] = "";
		v[n++] = "{auth_type}", v[n++] = "";
		break;
	case 'R':
		v[n++] = "{rcpt_addr}", v[n++] = m->rcpt[r->sub];
		break;
	default:
		v[n++] = "i", v[n++] = m->queue_id;
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
	milter_put(r, 'D', buf, o, NULL, 0);
}

/* ------------------------------------------------------------------ */
/* conversation end */

static void
milter_conn_close(struct milter_run *r)
{
	ev_io_stop(backmxd.loop, &r->rio);
	ev_io_stop(backmxd.loop, &r->wio);
	ev_timer_stop(backmxd.loop, &r->timer);
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	r->outlen = r->inlen = 0;
	r->waiting = 0;
}

static void
milter_set_verdict(struct milter_run *r, enum milter_verdict v,
		   const char *reply, const char *why)
{
	if (v > r->own)
		r->own = v;
	if (v <= r->res.verdict && r->res.verdict != MILTER_CONTINUE)
		return;
	r->res.verdict = v;
	if (reply != NULL)
		snprintf(r->res.reply, sizeof(r->res.reply), "%s", reply);
	snprintf(r->res.why, sizeof(r->res.why), "milter %.60s: %.180s", r->cm->spec,
		 why);
}

static void milter_free_headers(struct milter_run *r);
static int milter_parse_headers(struct milter_run *r);

/* milter_chain - bake the header and body edits so far into a new copy
 * of the message, which the next milter is shown; 0, or -1 */
static int
milter_chain(struct milter_run *r)
{
	struct milter_mod **pp, *m;
	int edits = r->res.body != NULL;
	FILE *f;

	for (m = r->res.mods; m != NULL; m = m->next)
		if (m->kind == MILTER_MOD_ADDHDR ||
		    m->kind == MILTER_MOD_INSHDR || m->kind == MILTER_MOD_CHGHDR)
			edits = 1;
	if (!edits)
		return 0;
	if ((f = milter_apply_file(&r->res, r->m.data)) == NULL)
		return -1;
	/* applied: only the recipient changes stay for smtpd_milter.c */
	for (pp = &r->res.mods; (m = *pp) != NULL;)
		if (m->kind == MILTER_MOD_ADDRCPT || m->kind == MILTER_MOD_DELRCPT)
			pp = &m->next;
		else {
			*pp = m->next;
			free(m->name);
			free(m->value);
			free(m);
		}
	if (r->res.body != NULL)
		fclose(r->res.body);
	r->res.body = NULL;
	if (r->own_data != NULL)
		fclose(r->own_data);
	r->own_data = r->m.data = f;
	milter_free_headers(r);
	if (milter_parse_headers(r) < 0)
		milter_free_headers(r);
	return 0;
}

/* milter_account - this milter's outcome and wait: log line, metrics */
static void
milter_account(struct milter_run *r)
{
	static const char *const names[] = {
		[MILTER_CONTINUE] = "accepted",	  [MILTER_DISCARD] = "discarded",
		[MILTER_QUARANTINE] = "quarantined", [MILTER_TEMPFAIL] = "tempfailed",
		[MILTER_REJECT] = "rejected",
	};
	const char *o = r->failed ? "failed" : names[r->own];

	log_msg(r->m.queue_id, "milter %s: %s, waited %.3fs", r->cm->spec, o,
		r->wait);
	milter_metrics_record(r->cm->spec, r->wait, o);
}

/* milter_finish_one - this milter is done; the next, or the verdict */
static void
milter_finish_one(struct milter_run *r)
{
	milter_conn_close(r);
	milter_account(r);
	if (r->res.verdict != MILTER_REJECT &&
	    r->res.verdict != MILTER_TEMPFAIL &&
	    r->res.verdict != MILTER_DISCARD &&
	    r->idx + 1 < backmxd.cfg->filter->nmilter && milter_chain(r) < 0) {
		log_err("%s: milter: cannot copy the edited message",
			r->m.queue_id);
		r->res.verdict = MILTER_TEMPFAIL;
		snprintf(r->res.reply, sizeof(r->res.reply),
			 "451 4.3.0 Error: local error in processing");
		snprintf(r->res.why, sizeof(r->res.why),
			 "milter chain: cannot copy the edited message");
	}
	if (r->res.verdict == MILTER_REJECT || r->res.verdict == MILTER_TEMPFAIL ||
	    r->res.verdict == MILTER_DISCARD ||
	    ++r->idx >= backmxd.cfg->filter->nmilter) {
		milter_cb cb = r->cb;
		void *arg = r->arg;
		struct milter_result *res = malloc(sizeof(*res));

		if (res != NULL) {
			*res = r->res;
			memset(&r->res, 0, sizeof(r->res));
			/* the edited copy goes with the result */
			res->message = r->own_data;
			r->own_data = NULL;
		}
		switch (res != NULL ? res->verdict : MILTER_TEMPFAIL) {
		case MILTER_CONTINUE:
			stats.milter_accepted++;
			break;
		case MILTER_DISCARD:
			stats.milter_discarded++;
			break;
		case MILTER_QUARANTINE:
			stats.milter_quarantined++;
			break;
		case MILTER_TEMPFAIL:
			stats.milter_tempfailed++;
			break;
		case MILTER_REJECT:
			stats.milter_rejected++;
			break;
		}
		r->cb = NULL;
		milter_cancel(r);
		cb(arg, res);
		return;
	}
	milter_conn_start(r);
}

/* milter_fail - down, slow or garbage: milter_default_action */
static void
milter_fail(struct milter_run *r, const char *why)
{
	const struct config_filter *f = backmxd.cfg->filter;
	char w[200];

	stats.milter_failed++;
	r->failed = 1;
	snprintf(w, sizeof(w), "%s; milter_default_action=%s", why,
		 config_filter_action_str(f->milter_default_action));
	log_warn("%s: milter %s: %s", r->m.queue_id, r->cm->spec, w);
	if (f->milter_default_action == FILTER_TEMPFAIL)
		milter_set_verdict(r, MILTER_TEMPFAIL,
				   "451 4.7.1 Service unavailable - try again "
				   "later",
				   w);
	else if (f->milter_default_action == FILTER_REJECT)
		milter_set_verdict(r, MILTER_REJECT,
				   "550 5.7.1 Command rejected", w);
	milter_finish_one(r);
}

/* ------------------------------------------------------------------ */
/* replies */

static int
milter_mod_add(struct milter_run *r, enum milter_mod_kind k, uint32_t index,
	       const char *name, const char *value)
{
	struct milter_mod *m, **pp;
	size_t l = strlen(name) + (value != NULL ? strlen(value) : 0);

	if (++r->nmods > MILTER_MODS_MAX ||
	    (r->mods_len += l) > MILTER_HDRS_MAX) {
		r->bad = "too many modifications (over 1000 or 1 MB)";
		return -1;
	}
	if ((m = calloc(1, sizeof(*m))) == NULL)
		return -1;
	m->kind = k;
	m->index = index;
	m->name = strdup(name);
	m->value = value != NULL ? strdup(value) : NULL;
	for (pp = &r->res.mods; *pp != NULL; pp = &(*pp)->next)
		;
	*pp = m;
	return 0;
}

/* milter_reply - one packet; 1: step answered, 0: keep reading, -1 bad */
static int
milter_reply(struct milter_run *r, char cmd, const unsigned char *d,
	     size_t dl)
{
	char text[512];
	const char *s[2];

	if (r->step == MS_OPTNEG) {
		if (cmd != 'O' || dl < 12)
			return -1;
		uint32_t v[3];

		memcpy(v, d, 12);
		if (ntohl(v[0]) < 2)
			return -1;
		r->actions = ntohl(v[1]) & MILTER_ACTIONS;
		r->proto = ntohl(v[2]);
		/* the macro lists that follow are not needed: every macro
		 * we have is sent at its stage */
		return 1;
	}
	switch (cmd) {
	case 'c':
		return 1;
	case 'p':	/* progress: wait on, with a fresh timer, within limits */
		if (ev_now(backmxd.loop) - r->sent_at >
		    MILTER_PROGRESS_TIMES *
			    backmxd.cfg->filter->milter_timeout) {
			r->bad = "only progress replies for 10 x milter_timeout";
			return -1;
		}
		ev_timer_again(backmxd.loop, &r->timer);
		return 0;
	case 's':
		if (r->step != MS_BODY)
			return -1;
		r->skip_body = 1;
		return 1;
	case 'a':
		r->step = MS_DONE;	/* this milter accepts the message */
		return 1;
	case 'd':
		milter_set_verdict(r, MILTER_DISCARD, NULL, "discard");
		r->step = MS_DONE;
		return 1;
	case 'r':
	case 't':
	case 'y':
		if (cmd == 'y') {
			if (milter_replycode(d, dl, text, sizeof(text)) < 0)
				return -1;
		} else
			snprintf(text, sizeof(text), "%s",
				 cmd == 'r' ? "550 5.7.1 Command rejected"
					    : "451 4.7.1 Service unavailable - "
					      "try again later");
		if (r->step == MS_RCPT && r->res.rcpt_rejected != NULL) {
			/* that recipient only */
			r->res.rcpt_rejected[r->sub] = text[0] == '5' ? 5 : 4;
			return 1;
		}
		milter_set_verdict(r, text[0] == '5' ? MILTER_REJECT
						      : MILTER_TEMPFAIL,
				   text, text);
		r->step = MS_DONE;
		return 1;
	}
	if (r->step != MS_EOM)
		return -1;
	/* modifications, only at end of message */
	switch (cmd) {
	case 'h':
		if (!(r->actions & SMFIF_ADDHDRS) || milter_strings(d, dl, s, 2) < 0)
			return -1;
		return milter_mod_add(r, MILTER_MOD_ADDHDR, 0, s[0], s[1]) < 0 ? -1 : 0;
	case 'i':
	case 'm': {
		uint32_t idx;

		if (dl < 4 || !(r->actions & (cmd == 'i' ? SMFIF_ADDHDRS
							 : SMFIF_CHGHDRS)) ||
		    milter_strings(d + 4, dl - 4, s, 2) < 0)
			return -1;
		memcpy(&idx, d, 4);
		return milter_mod_add(r, cmd == 'i' ? MILTER_MOD_INSHDR
						    : MILTER_MOD_CHGHDR,
				      ntohl(idx), s[0], s[1]) < 0
			       ? -1
			       : 0;
	}
	case '+':
	case '-':
		if (!(r->actions & (cmd == '+' ? SMFIF_ADDRCPT : SMFIF_DELRCPT)) ||
		    milter_strings(d, dl, s, 1) < 0)
			return -1;
		return milter_mod_add(r, cmd == '+' ? MILTER_MOD_ADDRCPT
						    : MILTER_MOD_DELRCPT,
				      0, s[0], NULL) < 0
			       ? -1
			       : 0;
	case '2': /* SMFIR_ADDRCPT_PAR: ESMTP arguments are not kept */
		if (!(r->actions & SMFIF_ADDRCPT_PAR) ||
		    (milter_strings(d, dl, s, 2) < 0 &&
		     milter_strings(d, dl, s, 1) < 0))
			return -1;
		return milter_mod_add(r, MILTER_MOD_ADDRCPT, 0, s[0], NULL) < 0
			       ? -1
			       : 0;
	case 'e': { /* SMFIR_CHGFROM: the envelope sender; arguments ignored */
		size_t l;

		if (!(r->actions & SMFIF_CHGFROM) ||
		    (milter_strings(d, dl, s, 2) < 0 &&
		     milter_strings(d, dl, s, 1) < 0))
			return -1;
		l = strlen(s[0]);
		if (l >= 2 && s[0][0] == '<' && s[0][l - 1] == '>')
			snprintf(r->res.sender, sizeof(r->res.sender), "%.*s",
				 (int)(l - 2), s[0] + 1);
		else
			snprintf(r->res.sender, sizeof(r->res.sender), "%s",
				 s[0]);
		r->res.chgfrom = 1;
		/* the next milter's MAIL FROM is the new sender */
		r->m.sender = r->res.sender;
		return 0;
	}
	case 'b':
		if (!(r->actions & SMFIF_CHGBODY))
			return -1;
		if ((r->body_len += dl) > backmxd.cfg->max_size) {
			r->bad = "replacement body too large (over max_size)";
			return -1;
		}
		if (r->res.body == NULL && (r->res.body = tmpfile()) == NULL)
			return -1;
		if (dl > 0 && fwrite(d, 1, dl, r->res.body) != dl)
			return -1;
		return 0;
	case 'q':
		if (!(r->actions & SMFIF_QUARANTINE) ||
		    milter_strings(d, dl, s, 1) < 0)
			return -1;
		snprintf(r->res.quarantine, sizeof(r->res.quarantine), "%s",
			 s[0]);
		milter_set_verdict(r, MILTER_QUARANTINE, NULL, "quarantine");
		return 0;
	}
	return -1;
}

static void
milter_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct milter_run *r = w->data;
	ssize_t n;

	if (r->inlen == r->incap) {
		size_t cap = r->incap ? r->incap * 2 : 4096;
		unsigned char *p;

		if (cap > MILTER_PACKET_MAX + 8 ||
		    (p = realloc(r->in, cap)) == NULL) {
			milter_fail(r, "reply too long");
			return;
		}
		r->in = p;
		r->incap = cap;
	}
	n = recv(r->fd, r->in + r->inlen, r->incap - r->inlen, 0);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		milter_fail(r, n == 0 ? "connection closed" : strerror(errno));
		return;
	}
	r->inlen += n;
	for (;;) {
		const unsigned char *d;
		size_t dl;
		char cmd;
		int k = milter_packet_parse(r->in, r->inlen, &cmd, &d, &dl);

		if (k == 0)
			return;
		if (k < 0) {
			milter_fail(r, "garbage reply (bad packet length)");
			return;
		}
		if (!r->waiting) {
			milter_fail(r, "reply nobody asked for");
			return;
		}
		int rc = milter_reply(r, cmd, d, dl);

		memmove(r->in, r->in + k, r->inlen - k);
		r->inlen -= k;
		if (rc < 0) {
			char why[96];

			if (r->bad != NULL)
				snprintf(why, sizeof(why), "%s", r->bad);
			else
				snprintf(why, sizeof(why),
					 "unexpected reply '%c' at step %d",
					 cmd >= 0x20 && cmd < 0x7f ? cmd : '?',
					 r->step);
			milter_fail(r, why);
			return;
		}
		if (rc == 1) {
			stats.milter_replies++;
			stats.milter_latency_ms += (uint64_t)(
				(ev_now(loop) - r->sent_at) * 1000);
			r->wait += ev_now(loop) - r->sent_at;
			r->waiting = 0;
			ev_io_stop(loop, &r->rio);
			ev_timer_stop(loop, &r->timer);
			if (r->inlen > 0) {
				milter_fail(r, "more replies than asked for");
				return;
			}
			milter_next(r);
			return;
		}
	}
}

static void
milter_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct milter_run *r = w->data;

	while (r->outlen > 0) {
		ssize_t n = send(r->fd, r->out, r->outlen, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return;
			if (r->step == MS_OPTNEG && !r->waiting)
				milter_fail(r, strerror(errno));
			else
				milter_fail(r, strerror(errno));
			return;
		}
		memmove(r->out, r->out + n, r->outlen - n);
		r->outlen -= n;
	}
	ev_io_stop(loop, &r->wio);
	if (r->waiting)
		ev_io_start(loop, &r->rio);
	else
		milter_next(r);
}

static void
milter_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct milter_run *r = w->data;

	milter_fail(r, r->fd >= 0 && r->step == MS_OPTNEG && r->waiting
			       ? "no answer to option negotiation"
			       : "timeout");
}

/* milter_send - the packets are queued: write them, then maybe read */
static void
milter_send(struct milter_run *r, int want_reply)
{
	r->waiting = want_reply;
	r->sent_at = ev_now(backmxd.loop);
	ev_timer_set(&r->timer, 0., backmxd.cfg->filter->milter_timeout);
	ev_timer_again(backmxd.loop, &r->timer);
	ev_io_start(backmxd.loop, &r->wio);
}

/* milter_next - compose the next step; steps that get no reply run on */
static void
milter_next(struct milter_run *r)
{
	const struct milter_msg *m = &r->m;
	uint32_t p;

	for (;;) {
		p = r->proto;
		switch (r->step) {
		case MS_OPTNEG:
			r->step = MS_CONNECT;
			if (p & SMFIP_NOCONNECT)
				continue;
			{
				char buf[600];
				size_t o;
				uint16_t port = htons((uint16_t)m->client_port);

				o = snprintf(buf, sizeof(buf), "%s", m->client_name) + 1;
				buf[o++] = m->client_family == AF_INET6 ? '6' : '4';
				memcpy(buf + o, &port, 2);
				o += 2;
				o += snprintf(buf + o, sizeof(buf) - o, "%s",
					      m->client_addr) + 1;
				milter_macros(r, 'C');
				milter_put(r, 'C', buf, o, NULL, 0);
			}
			if (p & SMFIP_NR_CONN)
				continue;
			milter_send(r, 1);
			return;
		case MS_CONNECT:
			r->step = MS_HELO;
			if (p & SMFIP_NOHELO)
				continue;
			milter_macros(r, 'H');
			milter_put(r, 'H', m->helo, strlen(m->helo) + 1, NULL, 0);
			if (p & SMFIP_NR_HELO)
				continue;
			milter_send(r, 1);
			return;
		case MS_HELO: {
			char from[600];

			r->step = MS_MAIL;
			if (p & SMFIP_NOMAIL)
				continue;
			snprintf(from, sizeof(from), "<%s>", m->sender);
			milter_macros(r, 'M');
			milter_put(r, 'M', from, strlen(from) + 1, NULL, 0);
			if (p & SMFIP_NR_MAIL)
				continue;
			milter_send(r, 1);
			return;
		}
		case MS_MAIL:
			r->step = MS_RCPT;
			r->sub = -1;
			/* fall through */
		case MS_RCPT:
			if (!(p & SMFIP_NORCPT) && ++r->sub < m->nrcpt) {
				char to[600];

				snprintf(to, sizeof(to), "<%s>", m->rcpt[r->sub]);
				milter_macros(r, 'R');
				milter_put(r, 'R', to, strlen(to) + 1, NULL, 0);
				if (p & SMFIP_NR_RCPT)
					continue;
				milter_send(r, 1);
				return;
			}
			r->step = MS_DATA;
			if (p & SMFIP_NODATA)
				continue;
			milter_macros(r, 'T');
			milter_put(r, 'T', NULL, 0, NULL, 0);
			if (p & SMFIP_NR_DATA)
				continue;
			milter_send(r, 1);
			return;
		case MS_DATA:
			r->step = MS_HEADER;
			r->sub = -1;
			/* fall through */
		case MS_HEADER:
			if (!(p & SMFIP_NOHDRS) && ++r->sub < r->nhdrs) {
				const struct milter_hdr *h = &r->hdrs[r->sub];
				const char *v = h->value;

				if (!(p & SMFIP_HDR_LEADSPC) && *v == ' ')
					v++;
				milter_put(r, 'L', h->name, strlen(h->name) + 1, v,
					   strlen(v) + 1);
				if (p & SMFIP_NR_HDR)
					continue;
				milter_send(r, 1);
				return;
			}
			r->step = MS_EOH;
			if (p & SMFIP_NOEOH)
				continue;
			milter_put(r, 'N', NULL, 0, NULL, 0);
			if (p & SMFIP_NR_EOH)
				continue;
			milter_send(r, 1);
			return;
		case MS_EOH:
			r->step = MS_BODY;
			if (fseek(m->data, r->body_off, SEEK_SET) < 0) {
				milter_fail(r, "cannot read the message");
				return;
			}
			/* fall through */
		case MS_BODY:
			if (!(p & SMFIP_NOBODY) && !r->skip_body && !r->body_done) {
				unsigned char buf[MILTER_CHUNK];
				size_t n = fread(buf, 1, sizeof(buf), m->data);

				if (n > 0) {
					milter_put(r, 'B', buf, n, NULL, 0);
					if (p & SMFIP_NR_BODY)
						continue;
					milter_send(r, 1);
					return;
				}
				r->body_done = 1;
			}
			r->step = MS_EOM;
			milter_macros(r, 'E');
			milter_put(r, 'E', NULL, 0, NULL, 0);
			milter_send(r, 1);
			return;
		case MS_EOM:
		case MS_DONE:
			milter_put(r, 'Q', NULL, 0, NULL, 0);
			/* best effort: the QUIT need not arrive */
			(void)!send(r->fd, r->out, r->outlen,
				    MSG_NOSIGNAL | MSG_DONTWAIT);
			milter_finish_one(r);
			return;
		}
	}
}

static void
milter_conn_start(struct milter_run *r)
{
	const struct config_filter *f = backmxd.cfg->filter;
	uint32_t v[3];

	r->cm = &f->milter[r->idx];
	r->wait = 0;
	r->nmods = 0;
	r->mods_len = 0;
	r->body_len = 0;
	r->bad = NULL;
	r->own = MILTER_CONTINUE;
	r->failed = 0;
	r->step = MS_OPTNEG;
	r->sub = 0;
	r->body_done = r->skip_body = 0;
	r->proto = r->actions = 0;
	r->fd = socket(r->cm->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
						     SOCK_CLOEXEC,
		       0);
	ev_io_init(&r->rio, milter_read_cb, r->fd, EV_READ);
	ev_io_init(&r->wio, milter_write_cb, r->fd, EV_WRITE);
	r->rio.data = r->wio.data = r;
	if (r->fd < 0 ||
	    (connect(r->fd, (const struct sockaddr *)&r->cm->ss, r->cm->sslen) <
		     0 &&
	     errno != EINPROGRESS)) {
		/* reported from the timer, never inside milter_run() */
		log_warn("%s: milter %s: connect: %s", r->m.queue_id,
			 r->cm->spec, strerror(errno));
		if (r->fd >= 0)
			close(r->fd);
		r->fd = -1;
		ev_timer_set(&r->timer, 0., 0.);
		ev_timer_start(backmxd.loop, &r->timer);
		return;
	}
	v[0] = htonl(6);
	v[1] = htonl(MILTER_ACTIONS);
	v[2] = htonl(MILTER_PROTOCOL);
	milter_put(r, 'O', v, sizeof(v), NULL, 0);
	milter_send(r, 1);
}

/* ------------------------------------------------------------------ */
/* the message's header, for SMFIC_HEADER */

static int
milter_parse_headers(struct milter_run *r)
{
	FILE *fp = r->m.data;
	char line[2048];
	size_t total = 0;

	rewind(fp);
	while (fgets(line, sizeof(line), fp) != NULL) {
		size_t l = strlen(line);

		if (!strcmp(line, "\r\n") || !strcmp(line, "\n")) {
			total += l;	/* the body starts after it */
			break;
		}
		if (total + l > MILTER_HDRS_MAX || (line[0] != ' ' &&
		    line[0] != '\t' && strchr(line, ':') == NULL))
			break;		/* the body starts at this line */
		total += l;
		while (l > 0 && (line[l - 1] == '\n' || line[l - 1] == '\r'))
			line[--l] = '\0';
		if ((line[0] == ' ' || line[0] == '\t') && r->nhdrs > 0) {
			struct milter_hdr *h = &r->hdrs[r->nhdrs - 1];
			size_t ol = strlen(h->value);
			char *nv = realloc(h->value, ol + l + 2);

			if (nv == NULL)
				return -1;
			nv[ol] = '\n';
			memcpy(nv + ol + 1, line, l + 1);
			h->value = nv;
			continue;
		}
		char *colon = strchr(line, ':');

		if (colon == NULL)
			continue;	/* a continuation before any field */
		struct milter_hdr *nh =
			realloc(r->hdrs, (r->nhdrs + 1) * sizeof(*nh));

		if (nh == NULL)
			return -1;
		r->hdrs = nh;
		*colon = '\0';
		nh[r->nhdrs].name = strdup(line);
		nh[r->nhdrs].value = strdup(colon + 1);
		r->nhdrs++;
	}
	r->body_off = (long)total;
	return 0;
}

struct milter_run *
milter_run(const struct milter_msg *m, milter_cb cb, void *arg)
{
	const struct config_filter *f = backmxd.cfg->filter;
	struct milter_run *r;

	if (f == NULL || f->nmilter == 0)
		return NULL;
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	r->m = *m;
	r->cb = cb;
	r->arg = arg;
	r->fd = -1;
	r->res.rcpt_rejected = calloc(m->nrcpt > 0 ? m->nrcpt : 1, sizeof(int));
	ev_init(&r->timer, milter_timer_cb);
	r->timer.data = r;
	if (milter_parse_headers(r) < 0)
		r->nhdrs = 0;
	milter_conn_start(r);
	return r;
}

void
milter_result_free(struct milter_result *res)
{
	struct milter_mod *m, *next;

	if (res == NULL)
		return;
	for (m = res->mods; m != NULL; m = next) {
		next = m->next;
		free(m->name);
		free(m->value);
		free(m);
	}
	if (res->body != NULL)
		fclose(res->body);
	if (res->message != NULL)
		fclose(res->message);
	free(res->rcpt_rejected);
	free(res);
}

static void
milter_free_headers(struct milter_run *r)
{
	for (int i = 0; i < r->nhdrs; i++) {
		free(r->hdrs[i].name);
		free(r->hdrs[i].value);
	}
	free(r->hdrs);
	r->hdrs = NULL;
	r->nhdrs = 0;
}

void
milter_cancel(struct milter_run *r)
{
	if (r == NULL)
		return;
	milter_conn_close(r);
	milter_free_headers(r);
	if (r->own_data != NULL)
		fclose(r->own_data);
	free(r->out);
	free(r->in);
	/* what a cancelled run collected */
	struct milter_result *res = malloc(sizeof(*res));

	if (res != NULL) {
		*res = r->res;
		milter_result_free(res);
	}
	free(r);
}
