/*
 * bounce.c - RFC 3464 DSNs: failed recipients (bounces), delayed ones
 * (delay_warning) and relayed ones (NOTIFY=SUCCESS, next hop without
 * DSN, RFC 3461 5.2.2).  fwd_dsn.c hands it a batch of one message; it
 * decides whether a DSN is wanted (never for <> or a bounce, NOTIFY
 * honoured), composes the multipart/report
 * (text/plain, message/delivery-status, then message/rfc822 or
 * text/rfc822-headers read from the spool) and queues it with
 * spool_writer_* as a new message from <> to the original sender.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bounce.h"

struct sbuf {
	char *p;
	size_t len, cap;
	int failed;
};

static void sbuf_printf(struct sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
sbuf_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->failed)
		return;
	for (;;) {
		size_t room = b->cap - b->len;

		va_start(ap, fmt);
		n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->failed = 1;
			return;
		}
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		{
			size_t ncap = b->cap ? b->cap * 2 : 4096;
			char *np;

			while (ncap < b->len + (size_t)n + 1)
				ncap *= 2;
			if ((np = realloc(b->p, ncap)) == NULL) {
				b->failed = 1;
				return;
			}
			b->p = np;
			b->cap = ncap;
		}
	}
}

/* bounce_date - RFC 5322 date-time with a numeric zone */
static void
bounce_date(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	localtime_r(&tt, &tm);
	strftime(buf, len, "%a, %d %b %Y %H:%M:%S %z", &tm);
}

/* bounce_xtext_decode - "+XX" -> octet; non-printables become '?' */
static void
bounce_xtext_decode(const char *s, char *out, size_t outlen)
{
	size_t o = 0;

	for (; *s != '\0' && o + 1 < outlen; s++) {
		unsigned v;
		unsigned char ch = (unsigned char)*s;

		if (ch == '+' && sscanf(s + 1, "%2X", &v) == 1 &&
		    s[1] != '\0' && s[2] != '\0') {
			ch = (unsigned char)v;
			s += 2;
		}
		out[o++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	out[o] = '\0';
}

/* bounce_clean - printable ASCII only (text comes from peers) */
static void
bounce_clean(const char *s, char *out, size_t outlen)
{
	size_t o = 0;

	for (; *s != '\0' && o + 1 < outlen; s++) {
		unsigned char ch = (unsigned char)*s;

		out[o++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	out[o] = '\0';
}

int
bounce_wanted_kind(const struct spool_envelope *e, int i, enum bounce_kind kind)
{
	int n;

	if (e->is_bounce || e->sender == NULL || e->sender[0] == '\0')
		return 0;
	if (i < 0 || i >= e->nrcpt)
		return 0;
	n = e->rcpt[i].notify;
	if (n & SPOOL_NOTIFY_NEVER)
		return 0;
	switch (kind) {
	case BOUNCE_DELAYED:
		/* no NOTIFY: FAILURE,DELAY (RFC 3461 4.1) */
		return n == 0 || (n & SPOOL_NOTIFY_DELAY) != 0;
	case BOUNCE_RELAYED:
		return (n & SPOOL_NOTIFY_SUCCESS) != 0;
	case BOUNCE_FAILED:
		break;
	}
	return n == 0 || (n & SPOOL_NOTIFY_FAILURE) != 0;
}

int
bounce_wanted(const struct spool_envelope *e, int i)
{
	return bounce_wanted_kind(e, i, BOUNCE_FAILED);
}

int
bounce_return_full(const struct spool_envelope *e)
{
	if (e->ret == SPOOL_RET_FULL)
		return 1;
	if (e->ret == SPOOL_RET_HDRS)
		return 0;
	return e->size <= BOUNCE_FULL_MAX;
}

static const char *
bounce_status(const struct bounce_item *it, char *buf, size_t len)
{
	if (it->res.enh[0] != '\0')
		return it->res.enh;
	snprintf(buf, len, "%d.0.0",
	         it->res.code / 100 == 2   ? 2
	         : it->res.code / 100 == 4 ? 4
	                                   : 5);
	return buf;
}

static const char *const bounce_subject[] = {
    "Undelivered Mail Returned to Sender",
    "Delayed Mail (still being retried)",
    "Successful Mail Delivery Report",
};

static const char *const bounce_action[] = {"failed", "delayed", "relayed"};

char *
bounce_compose_report(const struct spool_envelope *e,
                      const struct bounce_item *it, int n, const char *hostname,
                      const char *msgid, int64_t now, int full, size_t *len)
{
	return bounce_compose(e, it, n, BOUNCE_FAILED, hostname, msgid, now, 0,
	                      full, len);
}

/* bounce_intro - the human-readable part's first paragraph */
static void
bounce_intro(struct sbuf *b, const struct spool_envelope *e,
             enum bounce_kind kind, const char *hostname, int64_t now,
             int64_t until, int full)
{
	char date[64];

	sbuf_printf(b, "This is the mail system at host %s.\r\n\r\n", hostname);
	switch (kind) {
	case BOUNCE_DELAYED:
		bounce_date(until, date, sizeof(date));
		sbuf_printf(
		    b,
		    "####################################################"
		    "#################\r\n# THIS IS A WARNING ONLY.  YOU "
		    "DO NOT NEED TO RESEND YOUR MESSAGE. #\r\n##########"
		    "##########################################################"
		    "#"
		    "\r\n\r\nYour message (queue id %s) could not be "
		    "delivered for %lld minute(s).\r\nIt will be retried "
		    "until %s.\r\nThe %s is attached below.\r\n\r\n",
		    e->id, (long long)((now - e->arrival) / 60), date,
		    full ? "message" : "message header");
		break;
	case BOUNCE_RELAYED:
		sbuf_printf(b,
		            "Your message (queue id %s) was successfully "
		            "relayed to the\r\nrecipients below, whose mail "
		            "system does not send delivery\r\nnotifications: "
		            "you may not get one for the final delivery.\r\n"
		            "\r\n",
		            e->id);
		break;
	case BOUNCE_FAILED:
		sbuf_printf(b,
		            "Your message (queue id %s) could not be "
		            "delivered to one or more\r\nrecipients. It is "
		            "attached below.\r\n\r\n",
		            e->id);
		break;
	}
}

char *
bounce_compose(const struct spool_envelope *e, const struct bounce_item *it,
               int n, enum bounce_kind kind, const char *hostname,
               const char *msgid, int64_t now, int64_t until, int full,
               size_t *len)
{
	struct sbuf b = {0};
	char date[64], txt[600], st[16];
	int i;

	if ((unsigned)kind > BOUNCE_RELAYED)
		return NULL;

	bounce_date(now, date, sizeof(date));
	sbuf_printf(&b, "Date: %s\r\n", date);
	sbuf_printf(&b, "From: MAILER-DAEMON@%s (Mail Delivery System)\r\n",
	            hostname);
	bounce_clean(e->sender, txt, sizeof(txt));
	sbuf_printf(&b, "To: <%s>\r\n", txt);
	sbuf_printf(&b, "Subject: %s\r\n", bounce_subject[kind]);
	sbuf_printf(&b, "Message-ID: <%s.dsn@%s>\r\n", msgid, hostname);
	sbuf_printf(&b, "Auto-Submitted: auto-replied\r\n");
	sbuf_printf(&b, "MIME-Version: 1.0\r\n");
	sbuf_printf(&b,
	            "Content-Type: multipart/report; "
	            "report-type=delivery-status;\r\n"
	            "\tboundary=\"%s/%s\"\r\n",
	            msgid, hostname);
	sbuf_printf(&b, "\r\nThis is a MIME-encapsulated message.\r\n\r\n");

	/* 1: for humans */
	sbuf_printf(&b, "--%s/%s\r\n", msgid, hostname);
	sbuf_printf(&b, "Content-Description: Notification\r\n"
	                "Content-Type: text/plain; charset=us-ascii\r\n\r\n");
	bounce_intro(&b, e, kind, hostname, now, until, full);
	for (i = 0; i < n; i++) {
		char a[600], t[300];

		bounce_clean(e->rcpt[it[i].rcpt].address, a, sizeof(a));
		bounce_clean(it[i].res.text, t, sizeof(t));
		if (it[i].remote_mta != NULL)
			sbuf_printf(&b, "<%s>: host %s said: %d %s %s\r\n", a,
			            it[i].remote_mta, it[i].res.code,
			            it[i].res.enh, t);
		else
			sbuf_printf(&b, "<%s>: %s %s\r\n", a, it[i].res.enh, t);
	}

	/* 2: for machines */
	sbuf_printf(&b, "\r\n--%s/%s\r\n", msgid, hostname);
	sbuf_printf(&b, "Content-Description: Delivery report\r\n"
	                "Content-Type: message/delivery-status\r\n\r\n");
	sbuf_printf(&b, "Reporting-MTA: dns; %s\r\n", hostname);
	if (e->envid != NULL && e->envid[0] != '\0') {
		bounce_xtext_decode(e->envid, txt, sizeof(txt));
		sbuf_printf(&b, "Original-Envelope-Id: %s\r\n", txt);
	}
	sbuf_printf(&b, "X-Backmx-Queue-ID: %s\r\n", e->id);
	bounce_clean(e->sender, txt, sizeof(txt));
	sbuf_printf(&b, "X-Backmx-Sender: rfc822; %s\r\n", txt);
	bounce_date(e->arrival, date, sizeof(date));
	sbuf_printf(&b, "Arrival-Date: %s\r\n", date);
	for (i = 0; i < n; i++) {
		const struct spool_rcpt *r = &e->rcpt[it[i].rcpt];
		char t[300];

		bounce_clean(r->address, txt, sizeof(txt));
		sbuf_printf(&b, "\r\nFinal-Recipient: rfc822; %s\r\n", txt);
		if (r->orcpt != NULL && r->orcpt[0] != '\0') {
			const char *semi = strchr(r->orcpt, ';');

			bounce_xtext_decode(semi ? semi + 1 : r->orcpt, txt,
			                    sizeof(txt));
			sbuf_printf(&b, "Original-Recipient: %.*s; %s\r\n",
			            semi ? (int)(semi - r->orcpt) : 6,
			            semi ? r->orcpt : "rfc822", txt);
		}
		sbuf_printf(&b, "Action: %s\r\n", bounce_action[kind]);
		sbuf_printf(&b, "Status: %s\r\n",
		            bounce_status(&it[i], st, sizeof(st)));
		bounce_clean(it[i].res.text, t, sizeof(t));
		if (it[i].remote_mta != NULL) {
			sbuf_printf(&b, "Remote-MTA: dns; %s\r\n",
			            it[i].remote_mta);
			sbuf_printf(&b, "Diagnostic-Code: smtp; %d %s%s%s\r\n",
			            it[i].res.code, it[i].res.enh,
			            it[i].res.enh[0] ? " " : "", t);
		} else
			sbuf_printf(&b, "Diagnostic-Code: X-Backmx; %s\r\n", t);
		if (it[i].last_attempt > 0) {
			bounce_date(it[i].last_attempt, date, sizeof(date));
			sbuf_printf(&b, "Last-Attempt-Date: %s\r\n", date);
		}
		if (kind == BOUNCE_DELAYED && until > 0) {
			bounce_date(until, date, sizeof(date));
			sbuf_printf(&b, "Will-Retry-Until: %s\r\n", date);
		}
	}

	/* 3: the message or its header */
	sbuf_printf(&b, "\r\n--%s/%s\r\n", msgid, hostname);
	if (full)
		sbuf_printf(&b,
		            "Content-Description: %s Message\r\n"
		            "Content-Type: message/rfc822\r\n\r\n",
		            kind == BOUNCE_FAILED    ? "Undelivered"
		            : kind == BOUNCE_DELAYED ? "Delayed"
		                                     : "Relayed");
	else
		sbuf_printf(&b,
		            "Content-Description: %s Message "
		            "Headers\r\nContent-Type: text/rfc822-headers\r\n"
		            "\r\n",
		            kind == BOUNCE_FAILED    ? "Undelivered"
		            : kind == BOUNCE_DELAYED ? "Delayed"
		                                     : "Relayed");
	if (b.failed) {
		free(b.p);
		return NULL;
	}
	*len = b.len;
	return b.p;
}

/* bounce_copy_original - the body (or its header) into the writer */
static int
bounce_copy_original(struct spool *s, const struct spool_envelope *e,
                     struct spool_writer *w, int full, int *ends_crlf)
{
	char *hdr = NULL;
	size_t hlen = 0;
	uint32_t n;
	int r, last_crlf = 1;

	for (n = 0;; n++) {
		const void *data;
		size_t len;

		r = spool_body_read(s, e->id, n, &data, &len);
		if (r < 0) {
			free(hdr);
			return -1;
		}
		if (r == 0)
			break;
		if (len == 0)
			continue;
		if (full) {
			if (spool_writer_append(w, data, len) < 0)
				return -1;
			last_crlf =
			    len >= 1 && ((const char *)data)[len - 1] == '\n';
			continue;
		}
		/* headers only: collect up to the empty line, bounded */
		{
			size_t take = len, k;
			char *nh;

			if (hlen + take > BOUNCE_HDRS_MAX)
				take = BOUNCE_HDRS_MAX - hlen;
			nh = realloc(hdr, hlen + take + 1);
			if (nh == NULL) {
				free(hdr);
				return -1;
			}
			hdr = nh;
			memcpy(hdr + hlen, data, take);
			hlen += take;
			for (k = 0; k + 1 < hlen; k++) {
				if (hdr[k] == '\n' &&
				    (hdr[k + 1] == '\n' ||
				     (hdr[k + 1] == '\r' && k + 2 < hlen &&
				      hdr[k + 2] == '\n'))) {
					hlen = k + 1;
					goto have_header;
				}
			}
			if (hlen >= BOUNCE_HDRS_MAX)
				break;
		}
	}
	if (full) {
		*ends_crlf = last_crlf;
		return 0;
	}
have_header:
	r = hlen > 0 ? spool_writer_append(w, hdr, hlen) : 0;
	*ends_crlf = hlen == 0 || hdr[hlen - 1] == '\n';
	free(hdr);
	return r;
}

int
bounce_create(struct spool *s, const struct spool_envelope *e,
              const struct bounce_item *it, int n, const char *hostname,
              int64_t now, struct spool_envelope **out, char *err,
              size_t errlen)
{
	return bounce_create_kind(s, e, it, n, BOUNCE_FAILED, hostname, now, 0,
	                          out, err, errlen);
}

/* the test hook: so many of the next allocations fail */
static int bounce_fail_count;

void
bounce_fail_allocs(int n)
{
	bounce_fail_count = n > 0 ? n : 0;
}

void *
bounce_calloc(size_t n, size_t size)
{
	if (bounce_fail_count > 0) {
		bounce_fail_count--;
		return NULL;
	}
	return calloc(n, size);
}

int
bounce_create_kind(struct spool *s, const struct spool_envelope *e,
                   const struct bounce_item *it, int n, enum bounce_kind kind,
                   const char *hostname, int64_t now, int64_t until,
                   struct spool_envelope **out, char *err, size_t errlen)
{
	struct bounce_item *want = NULL;
	struct spool_writer *w = NULL;
	struct spool_envelope *b = NULL;
	char *report = NULL, tail[256];
	size_t rlen;
	int i, nw = 0, full, crlf = 1;

	*out = NULL;
	for (i = 0; i < n; i++)
		if (bounce_wanted_kind(e, it[i].rcpt, kind))
			nw++;
	if (nw == 0)
		return 0;
	if ((want = bounce_calloc((size_t)nw, sizeof(*want))) == NULL)
		goto nomem;
	for (i = 0, nw = 0; i < n; i++)
		if (bounce_wanted_kind(e, it[i].rcpt, kind))
			want[nw++] = it[i];
	/* a warning or a success report returns the header unless RET=FULL
	 * asked for the whole message (as Postfix does) */
	full = kind == BOUNCE_FAILED ? bounce_return_full(e)
	                             : e->ret == SPOOL_RET_FULL;
	if ((w = spool_writer_new(s)) == NULL) {
		snprintf(err, errlen, "%s", spool_error(s));
		free(want);
		return -1;
	}
	report = bounce_compose(e, want, nw, kind, hostname, spool_writer_id(w),
	                        now, until, full, &rlen);
	if (report == NULL)
		goto nomem;
	if (spool_writer_append(w, report, rlen) < 0)
		goto spoolfail;
	if (bounce_copy_original(s, e, w, full, &crlf) < 0)
		goto spoolfail;
	snprintf(tail, sizeof(tail), "%s\r\n--%s/%s--\r\n", crlf ? "" : "\r\n",
	         spool_writer_id(w), hostname);
	if (spool_writer_append(w, tail, strlen(tail)) < 0)
		goto spoolfail;

	if ((b = bounce_calloc(1, sizeof(*b))) == NULL ||
	    (b->rcpt = bounce_calloc(1, sizeof(*b->rcpt))) == NULL)
		goto nomem;
	b->arrival = now;
	b->sender = strdup("");
	b->body =
	    e->body == SPOOL_BODY_7BIT ? SPOOL_BODY_7BIT : SPOOL_BODY_8BITMIME;
	b->smtputf8 = e->smtputf8;
	b->ret = SPOOL_RET_NONE;
	b->client_addr = strdup("127.0.0.1");
	b->client_helo = strdup(hostname);
	b->is_bounce = 1;
	b->nrcpt = 1;
	b->rcpt[0].address = strdup(e->sender);
	b->rcpt[0].state = SPOOL_RCPT_PENDING;
	b->rcpt[0].next_attempt = now;
	if (b->sender == NULL || b->client_addr == NULL ||
	    b->client_helo == NULL || b->rcpt[0].address == NULL)
		goto nomem;
	if (spool_writer_commit(w, b) < 0) {
		w = NULL;
		goto spoolfail;
	}
	free(report);
	free(want);
	*out = b;
	return 1;

nomem:
	snprintf(err, errlen, "out of memory");
	goto fail;
spoolfail:
	snprintf(err, errlen, "%s", spool_error(s));
fail:
	if (w != NULL)
		spool_writer_abort(w);
	spool_envelope_free(b);
	free(report);
	free(want);
	return -1;
}
