/*
 * dsn.c - RFC 3464 delivery status notifications (see dsn.h): the pure
 * composer of the multipart/report (RFC 6522) up to the returned
 * content, and dsn_bounce(), which streams the original message (or its
 * header) from the spool into a new message from <> to the sender and
 * hands it to the forwarder.  Never for a null sender or a bounce.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backmxd.h"
#include "dsn.h"
#include "forward.h"
#include "log.h"
#include "stats.h"

struct dsn_buf {
	char *p;
	size_t len, cap;
	int err;
};

static void
dsn_printf(struct dsn_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
dsn_printf(struct dsn_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->err)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p ? b->p + b->len : NULL,
			      b->p ? b->cap - b->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->err = 1;
			return;
		}
		if (b->p != NULL && b->len + (size_t)n < b->cap) {
			b->len += (size_t)n;
			return;
		}
		size_t ncap = b->cap ? b->cap * 2 : 4096;
		char *np;

		while (ncap < b->len + (size_t)n + 1)
			ncap *= 2;
		if ((np = realloc(b->p, ncap)) == NULL) {
			b->err = 1;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
}

/* dsn_date - RFC 5322 date of t (UTC) */
static void
dsn_date(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(buf, len, "%a, %d %b %Y %H:%M:%S +0000", &tm);
}

/* dsn_clean - text safe for a header or a report line (bounded) */
static void
dsn_clean(const char *in, char *out, size_t outlen)
{
	size_t o = 0;

	for (; in != NULL && *in != '\0' && o + 1 < outlen; in++) {
		unsigned char c = (unsigned char)*in;

		out[o++] = (c >= 32 && c < 127) ? (char)c : '?';
	}
	out[o] = '\0';
}

/* dsn_xtext_clean - xtext (RFC 3461 +HH) decoded, made printable */
static void
dsn_xtext_clean(const char *in, char *out, size_t outlen)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (; in != NULL && *in != '\0' && o + 1 < outlen; in++) {
		unsigned char c = (unsigned char)*in;
		const char *h1, *h2;

		if (c == '+' && in[1] != '\0' && in[2] != '\0' &&
		    (h1 = strchr(hex, in[1])) != NULL &&
		    (h2 = strchr(hex, in[2])) != NULL) {
			c = (unsigned char)((h1 - hex) * 16 + (h2 - hex));
			in += 2;
		}
		out[o++] = (c >= 32 && c < 127) ? (char)c : '?';
	}
	out[o] = '\0';
}

int
dsn_wanted(const struct spool_envelope *e, int i)
{
	int notify;

	if (e->is_bounce || e->sender == NULL || e->sender[0] == '\0')
		return 0;
	if (i < 0 || i >= e->nrcpt)
		return 0;
	notify = e->rcpt[i].notify;
	if (notify & SPOOL_NOTIFY_NEVER)
		return 0;
	if (notify != 0 && !(notify & SPOOL_NOTIFY_FAILURE))
		return 0;
	return 1;
}

/* dsn_mta_host - "host" of "host[addr]:port" */
static void
dsn_mta_host(const char *relay, char *out, size_t outlen)
{
	size_t n = strcspn(relay, "[");

	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, relay, n);
	out[n] = '\0';
}

char *
dsn_compose(const struct spool_envelope *e, const struct dsn_item *it, int n,
	    const char *hostname, const char *boundary, int64_t now, int full,
	    size_t *len)
{
	struct dsn_buf b = { 0 };
	char date[64], sender[POLICY_PATH_MAX + 8], addr[POLICY_PATH_MAX + 8];
	char text[300], mta[POLICY_DOMAIN_MAX + 1], orcpt[700];

	dsn_date(now, date, sizeof(date));
	dsn_clean(e->sender, sender, sizeof(sender));
	dsn_printf(&b,
		   "From: MAILER-DAEMON@%s (Mail Delivery System)\r\n"
		   "To: <%s>\r\n"
		   "Subject: Undelivered Mail Returned to Sender\r\n"
		   "Date: %s\r\n"
		   "Message-ID: <%s.%s@%s>\r\n"
		   "Auto-Submitted: auto-replied\r\n"
		   "MIME-Version: 1.0\r\n"
		   "Content-Type: multipart/report; "
		   "report-type=delivery-status;\r\n"
		   "\tboundary=\"%s\"\r\n"
		   "Content-Transfer-Encoding: %s\r\n"
		   "\r\n"
		   "This is a MIME-encapsulated message.\r\n"
		   "\r\n",
		   hostname, sender, date, e->id, "dsn", hostname, boundary,
		   full && e->body != SPOOL_BODY_7BIT ? "8bit" : "7bit");
	dsn_printf(&b,
		   "--%s\r\n"
		   "Content-Description: Notification\r\n"
		   "Content-Type: text/plain; charset=us-ascii\r\n"
		   "\r\n"
		   "This is the mail system at host %s.\r\n"
		   "\r\n"
		   "I'm sorry to have to inform you that your message could "
		   "not\r\n"
		   "be delivered to one or more recipients. It's attached "
		   "below.\r\n"
		   "\r\n",
		   boundary, hostname);
	for (int k = 0; k < n; k++) {
		if (!dsn_wanted(e, it[k].rcpt))
			continue;
		dsn_clean(e->rcpt[it[k].rcpt].address, addr, sizeof(addr));
		dsn_clean(it[k].res.text, text, sizeof(text));
		if (it[k].remote)
			dsn_printf(&b, "<%s>: host %s said: %d %s %s\r\n\r\n",
				   addr, it[k].remote_mta, it[k].res.code,
				   it[k].res.enh, text);
		else
			dsn_printf(&b, "<%s>: %s\r\n\r\n", addr, text);
	}
	dsn_date(e->arrival, date, sizeof(date));
	dsn_printf(&b,
		   "--%s\r\n"
		   "Content-Description: Delivery report\r\n"
		   "Content-Type: message/delivery-status\r\n"
		   "\r\n"
		   "Reporting-MTA: dns; %s\r\n"
		   "X-Backmx-Queue-ID: %s\r\n",
		   boundary, hostname, e->id);
	if (e->envid != NULL && e->envid[0] != '\0') {
		dsn_xtext_clean(e->envid, text, sizeof(text));
		dsn_printf(&b, "Original-Envelope-Id: %s\r\n", text);
	}
	dsn_printf(&b, "Arrival-Date: %s\r\n", date);
	for (int k = 0; k < n; k++) {
		const struct spool_rcpt *r;

		if (!dsn_wanted(e, it[k].rcpt))
			continue;
		r = &e->rcpt[it[k].rcpt];
		dsn_clean(r->address, addr, sizeof(addr));
		dsn_clean(it[k].res.text, text, sizeof(text));
		dsn_date(it[k].last_attempt, date, sizeof(date));
		dsn_printf(&b, "\r\nFinal-Recipient: rfc822; %s\r\n", addr);
		if (r->orcpt != NULL && strchr(r->orcpt, ';') != NULL) {
			const char *semi = strchr(r->orcpt, ';');

			dsn_xtext_clean(semi + 1, orcpt, sizeof(orcpt));
			dsn_printf(&b, "Original-Recipient: %.*s; %s\r\n",
				   (int)(semi - r->orcpt < 32 ? semi - r->orcpt
							       : 32),
				   r->orcpt, orcpt);
		}
		dsn_printf(&b, "Action: failed\r\nStatus: %s\r\n",
			   it[k].res.enh[0] ? it[k].res.enh : "5.0.0");
		if (it[k].remote && it[k].remote_mta[0] != '\0') {
			dsn_mta_host(it[k].remote_mta, mta, sizeof(mta));
			dsn_printf(&b, "Remote-MTA: dns; %s\r\n", mta);
		}
		dsn_printf(&b,
			   "Diagnostic-Code: smtp; %d %s %s\r\n"
			   "Last-Attempt-Date: %s\r\n",
			   it[k].res.code, it[k].res.enh, text, date);
	}
	dsn_printf(&b,
		   "\r\n"
		   "--%s\r\n"
		   "Content-Description: %s\r\n"
		   "Content-Type: %s\r\n"
		   "\r\n",
		   boundary,
		   full ? "Undelivered Message" : "Undelivered Message Headers",
		   full ? "message/rfc822" : "text/rfc822-headers");
	if (b.err) {
		free(b.p);
		return NULL;
	}
	*len = b.len;
	return b.p;
}

size_t
dsn_trailer(const char *boundary, char *buf, size_t buflen)
{
	int n = snprintf(buf, buflen, "\r\n--%s--\r\n", boundary);

	return n < 0 ? 0 : (size_t)n < buflen ? (size_t)n : buflen - 1;
}

/*
 * dsn_copy_body - the original message (full) or its header (up to the
 * empty line, bounded) into w.  0 ok, -1 spool error.
 */
static int
dsn_copy_body(struct spool_writer *w, const char *id, int full)
{
	const void *data;
	size_t len, total = 0, cut;
	uint32_t chunk = 0;
	int r, st = 1, done = 0;	/* st: 1 line start, 2 CR there, 0 */
	char *copy;

	while (!done) {
		r = spool_body_read(backmxd.spool, id, chunk++, &data, &len);
		if (r < 0)
			return -1;
		if (r == 0)
			return 0;
		cut = len;
		if (!full) {
			const char *p = data;

			for (size_t i = 0; i < len && !done; i++) {
				if (st == 1 && p[i] == '\n') {
					cut = i;
					done = 1;
				} else if (st == 2 && p[i] == '\n') {
					cut = i > 0 ? i - 1 : 0;
					done = 1;
				} else if (st == 1 && p[i] == '\r')
					st = 2;
				else
					st = p[i] == '\n' ? 1 : 0;
			}
			if (total + cut > DSN_HDRS_MAX) {
				cut = DSN_HDRS_MAX - total;
				done = 1;
			}
		}
		if (cut > 0) {
			if ((copy = malloc(cut)) == NULL)
				return -1;
			memcpy(copy, data, cut);
			r = spool_writer_append(w, copy, cut);
			free(copy);
			if (r < 0)
				return -1;
		}
		total += cut;
	}
	return 0;
}

int
dsn_bounce(const struct spool_envelope *e, const struct dsn_item *it, int n,
	   int64_t now)
{
	const char *hostname = backmxd.cfg->hostname;
	struct spool_envelope b;
	struct spool_rcpt rcpt;
	struct spool_writer *w;
	char boundary[SPOOL_ID_LEN + POLICY_DOMAIN_MAX + 40], trailer[400];
	char *head;
	size_t hlen, tlen;
	int wanted = 0, full;

	for (int k = 0; k < n; k++)
		if (dsn_wanted(e, it[k].rcpt))
			wanted++;
	if (wanted == 0) {
		log_msg(e->id, "no bounce: %s",
			e->is_bounce ? "the message is itself a bounce"
			: e->sender == NULL || e->sender[0] == '\0'
			    ? "null sender"
			    : "NOTIFY does not ask for failures");
		return 0;
	}
	full = e->ret == SPOOL_RET_FULL && e->size <= DSN_FULL_MAX;
	if ((w = spool_writer_new(backmxd.spool)) == NULL) {
		log_warn("%s: cannot create a DSN: %s", e->id,
			 spool_error(backmxd.spool));
		return -1;
	}
	snprintf(boundary, sizeof(boundary), "%s.%lld/%s", e->id,
		 (long long)now, hostname);
	head = dsn_compose(e, it, n, hostname, boundary, now, full, &hlen);
	if (head == NULL || spool_writer_append(w, head, hlen) < 0 ||
	    dsn_copy_body(w, e->id, full) < 0)
		goto fail;
	free(head);
	head = NULL;
	/* the CRLF before the closing boundary belongs to it (RFC 2046) */
	tlen = dsn_trailer(boundary, trailer, sizeof(trailer));
	if (spool_writer_append(w, trailer, tlen) < 0)
		goto fail_nofree;

	memset(&b, 0, sizeof(b));
	memset(&rcpt, 0, sizeof(rcpt));
	rcpt.address = e->sender;
	rcpt.state = SPOOL_RCPT_PENDING;
	rcpt.next_attempt = now;
	b.arrival = now;
	b.sender = "";
	b.body = full && e->body != SPOOL_BODY_7BIT ? SPOOL_BODY_8BITMIME
						    : SPOOL_BODY_7BIT;
	b.smtputf8 = e->smtputf8;
	b.ret = SPOOL_RET_NONE;
	b.client_addr = NULL;
	b.client_helo = (char *)hostname;
	b.is_bounce = 1;
	b.nrcpt = 1;
	b.rcpt = &rcpt;
	if (spool_writer_commit(w, &b) < 0) {
		log_warn("%s: cannot queue a DSN: %s", e->id,
			 spool_error(backmxd.spool));
		return -1;
	}
	stats.dsn_sent++;
	log_msg(e->id, "sender non-delivery notification: %s", b.id);
	log_msg(b.id, "from=<>, size=%llu, nrcpt=1",
		(unsigned long long)b.size);
	forward_queued(&b);
	return 1;
fail:
	free(head);
fail_nofree:
	log_warn("%s: cannot create a DSN: %s", e->id,
		 spool_error(backmxd.spool));
	spool_writer_abort(w);
	return -1;
}
