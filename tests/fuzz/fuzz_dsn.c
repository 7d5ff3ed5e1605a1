/*
 * fuzz_dsn.c - libFuzzer target for the DSN path: the MAIL and RCPT DSN
 * parameters (RET, ENVID, NOTIFY, ORCPT; policy/esmtp.c) as a client
 * sends them, stored in an envelope as smtpd.c stores them, then the
 * delivery status notification built from them and from the primary's
 * reply (relay/bounce.c, after smtp_client.c's reply parser).
 * Input: lines split at LF; the first octet picks the DSN kind and
 * whether RET=FULL is honoured; line 1 = MAIL parameters, line 2 = the
 * sender, line 3 = the primary's reply (CRLF appended), lines 4..9 =
 * recipients, "address SP RCPT-parameters".
 * Invariants: the DSN is CRLF lines only, every line at most 998 octets
 * and of printable US-ASCII (and TAB), no octet of a client's or peer's
 * text escapes its field, the wanted-test follows NOTIFY.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bounce.h"
#include "esmtp.h"
#include "smtp_client.h"
#include "spool.h"

#define FUZZ_RCPT_MAX 6

/* fuzz_check_dsn - the message as any MTA must be able to carry it */
static void
fuzz_check_dsn(const char *p, size_t len)
{
	size_t i, col = 0;

	for (i = 0; i < len; i++) {
		unsigned char c = p[i];

		if (c == '\r') {
			if (i + 1 >= len || p[i + 1] != '\n')
				abort(); /* bare CR */
			i++;
			col = 0;
			continue;
		}
		if (c == '\n')
			abort(); /* bare LF */
		if ((c < 0x20 && c != '\t') || c > 0x7e)
			abort(); /* not printable US-ASCII */
		if (++col > 998)
			abort(); /* RFC 5322 2.1.1 */
	}
	if (len < 2 || p[len - 2] != '\r' || p[len - 1] != '\n')
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf, *line[3 + FUZZ_RCPT_MAX], *p, *end;
	struct spool_envelope e;
	struct spool_rcpt rc[FUZZ_RCPT_MAX];
	struct bounce_item it[FUZZ_RCPT_MAX];
	struct esmtp_mail m;
	struct result res, reply;
	char replybuf[1024];
	int nline = 0, n = 0, i, kind, full;

	if (size < 1 || size > 8192)
		return 0;
	kind = data[0] % 3;
	full = (data[0] >> 2) & 1;
	if ((buf = malloc(size)) == NULL)
		return 0;
	memcpy(buf, data + 1, size - 1);
	buf[size - 1] = '\0';
	if (memchr(buf, '\0', size - 1) != NULL) {
		/* a session never hands over a NUL (500 invalid characters) */
		free(buf);
		return 0;
	}
	for (p = buf; nline < 3 + FUZZ_RCPT_MAX; p = end + 1) {
		line[nline++] = p;
		if ((end = strchr(p, '\n')) == NULL)
			break;
		*end = '\0';
	}
	while (nline < 3)
		line[nline++] = "";

	memset(&e, 0, sizeof(e));
	memset(&res, 0, sizeof(res));
	memset(&m, 0, sizeof(m));
	if (esmtp_mail_params(line[0], &m, &res) < 0) {
		if (res.code < 500 || res.code > 599)
			abort();
		free(buf);
		return 0;
	}
	strcpy(e.id, "0123456789AB");
	e.arrival = 1764000000;
	e.size = 1000;
	e.sender = line[1];
	e.ret = m.ret;
	e.envid = (char *)m.envid;
	e.rcpt = rc;

	/* the primary's verdict, through the client's reply parser */
	memset(&reply, 0, sizeof(reply));
	{
		size_t l = strlen(line[2]);
		struct smtp_reply rep;
		const char *why = NULL;

		if (l > sizeof(replybuf) - 3)
			l = sizeof(replybuf) - 3;
		memcpy(replybuf, line[2], l);
		memcpy(replybuf + l, "\r\n", 3);
		if (smtp_reply_parse(replybuf, l + 2, &rep, &why) > 0)
			smtp_reply_result(replybuf, &rep, &reply);
		else
			result_set(&reply, 550, "5.1.1", "local: no such user");
	}

	for (i = 3; i < nline; i++) {
		struct esmtp_rcpt r;
		char *sp = strchr(line[i], ' ');

		memset(&r, 0, sizeof(r));
		if (sp != NULL) {
			*sp = '\0';
			memset(&res, 0, sizeof(res));
			if (esmtp_rcpt_params(sp + 1, &r, &res) < 0) {
				if (res.code < 500 || res.code > 599)
					abort();
				continue; /* refused: never in an envelope */
			}
		}
		memset(&rc[n], 0, sizeof(rc[n]));
		rc[n].address = line[i];
		rc[n].orcpt = (char *)r.orcpt;
		rc[n].notify = r.notify;
		e.nrcpt = n + 1;
		if (bounce_wanted_kind(&e, n, (enum bounce_kind)kind) !=
		    (e.sender[0] != '\0' && !(r.notify & ESMTP_NOTIFY_NEVER) &&
		     (kind == BOUNCE_RELAYED
		          ? (r.notify & ESMTP_NOTIFY_SUCCESS) != 0
		      : kind == BOUNCE_DELAYED
		          ? r.notify == 0 || (r.notify & ESMTP_NOTIFY_DELAY)
		          : r.notify == 0 ||
		                (r.notify & ESMTP_NOTIFY_FAILURE))))
			abort();
		memset(&it[n], 0, sizeof(it[n]));
		it[n].rcpt = n;
		it[n].res = reply;
		it[n].remote_mta = (i & 1) ? "mx1.example.org" : NULL;
		it[n].last_attempt = (i & 2) ? 1764000600 : 0;
		n++;
	}
	e.nrcpt = n;

	{
		size_t len = 0;
		char *dsn = bounce_compose(
		    &e, it, n, (enum bounce_kind)kind, "mx2.example.net",
		    "0123456789AC", 1764003600, 1764400000,
		    full && bounce_return_full(&e), &len);

		if (dsn == NULL)
			abort(); /* only on ENOMEM */
		fuzz_check_dsn(dsn, len);
		free(dsn);
	}
	free(buf);
	return 0;
}
