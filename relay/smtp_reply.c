/*
 * smtp_reply.c - the text side of the outbound client, pure and fuzzed
 * (tests/fuzz/fuzz_smtp_reply.c): an SMTP reply parsed out of the input
 * buffer, turned into the one result type, the EHLO keywords into
 * capability bits, and the DATA transformation of a spool body (CRLF
 * line endings, dot-stuffing).  Called by smtp_client*.c; calls nothing
 * but libc.  Declared in smtp_client.h.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "smtp_client.h"

/* ------------------------------------------------------------------ */
/* Reply parser */

int
smtp_reply_parse(const char *buf, size_t len, struct smtp_reply *out,
                 const char **why)
{
	size_t pos = 0;
	const char *dummy;

	if (why == NULL)
		why = &dummy;
	out->code = 0;
	out->nlines = 0;
	for (;;) {
		const char *lf;
		size_t avail = len - pos, llen, tend;
		int code;

		lf = memchr(buf + pos, '\n',
		            avail < SMTP_REPLY_LINE_MAX ? avail
		                                        : SMTP_REPLY_LINE_MAX);
		if (lf == NULL) {
			if (avail >= SMTP_REPLY_LINE_MAX) {
				*why = "reply line too long";
				return -1;
			}
			return 0;
		}
		llen = (size_t)(lf - (buf + pos)); /* without LF */
		tend = llen;
		if (tend > 0 && buf[pos + tend - 1] == '\r')
			tend--;
		if (tend < 3 || buf[pos] < '2' || buf[pos] > '5' ||
		    buf[pos + 1] < '0' || buf[pos + 1] > '5' ||
		    buf[pos + 2] < '0' || buf[pos + 2] > '9') {
			*why = "malformed reply code";
			return -1;
		}
		code = (buf[pos] - '0') * 100 + (buf[pos + 1] - '0') * 10 +
		       (buf[pos + 2] - '0');
		if (out->nlines > 0 && code != out->code) {
			*why = "reply code changes within a multi-line reply";
			return -1;
		}
		if (tend > 3 && buf[pos + 3] != ' ' && buf[pos + 3] != '-') {
			*why = "malformed reply separator";
			return -1;
		}
		if (out->nlines >= SMTP_REPLY_LINES_MAX) {
			*why = "too many reply lines";
			return -1;
		}
		out->code = code;
		out->line[out->nlines].off = pos + (tend > 3 ? 4 : 3);
		out->line[out->nlines].len = tend > 3 ? tend - 4 : 0;
		out->nlines++;
		pos += llen + 1;
		if (tend <= 3 || buf[pos - llen - 1 + 3] == ' ')
			return (int)pos;
	}
}

void
smtp_reply_result(const char *buf, const struct smtp_reply *rep,
                  struct result *r)
{
	size_t o = 0, i, k;
	const char *t;
	size_t tl;

	memset(r, 0, sizeof(*r));
	r->code = rep->code;
	if (rep->nlines == 0)
		return;
	t = buf + rep->line[0].off;
	tl = rep->line[0].len;
	/* enhanced code "c.sss.ddd" of the same class as the reply */
	if (tl >= 5 && t[0] == '0' + rep->code / 100 && t[1] == '.') {
		k = 2;
		while (k < tl && k < 6 && t[k] >= '0' && t[k] <= '9')
			k++;
		if (k > 2 && k < tl && t[k] == '.') {
			size_t m = ++k;

			while (k < tl && k < m + 3 && t[k] >= '0' &&
			       t[k] <= '9')
				k++;
			if (k > m && (k == tl || t[k] == ' ') &&
			    k < sizeof(r->enh)) {
				memcpy(r->enh, t, k);
				r->enh[k] = '\0';
				t += k;
				tl -= k;
				while (tl > 0 && *t == ' ')
					t++, tl--;
			}
		}
	}
	for (i = 0; i < (size_t)rep->nlines; i++) {
		const char *s = i == 0 ? t : buf + rep->line[i].off;
		size_t sl = i == 0 ? tl : rep->line[i].len;

		/* later lines repeat the enhanced code: drop it */
		if (i > 0 && r->enh[0] != '\0' && sl >= strlen(r->enh) &&
		    !memcmp(s, r->enh, strlen(r->enh))) {
			s += strlen(r->enh);
			sl -= strlen(r->enh);
			while (sl > 0 && *s == ' ')
				s++, sl--;
		}
		if (i > 0 && o > 0 && o + 1 < sizeof(r->text))
			r->text[o++] = ' ';
		for (k = 0; k < sl && o + 1 < sizeof(r->text); k++) {
			unsigned char ch = (unsigned char)s[k];

			r->text[o++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
		}
	}
	r->text[o] = '\0';
}

int
smtp_client_caps(const char *buf, const struct smtp_reply *rep,
                 unsigned long long *size)
{
	int caps = 0, i;

	*size = 0;
	for (i = 1; i < rep->nlines; i++) { /* line 0 is the greeting */
		char kw[32];
		const char *s = buf + rep->line[i].off;
		size_t l = rep->line[i].len, k = 0;

		while (k < l && k + 1 < sizeof(kw) && s[k] != ' ') {
			kw[k] = s[k];
			k++;
		}
		kw[k] = '\0';
		if (!strcasecmp(kw, "PIPELINING"))
			caps |= SMTP_CAP_PIPELINING;
		else if (!strcasecmp(kw, "8BITMIME"))
			caps |= SMTP_CAP_8BITMIME;
		else if (!strcasecmp(kw, "DSN"))
			caps |= SMTP_CAP_DSN;
		else if (!strcasecmp(kw, "SMTPUTF8"))
			caps |= SMTP_CAP_SMTPUTF8;
		else if (!strcasecmp(kw, "STARTTLS"))
			caps |= SMTP_CAP_STARTTLS;
		else if (!strcasecmp(kw, "SIZE")) {
			unsigned long long v = 0;

			caps |= SMTP_CAP_SIZE;
			while (k < l && s[k] == ' ')
				k++;
			for (; k < l && s[k] >= '0' && s[k] <= '9'; k++) {
				if (v > 1000000000000000ULL)
					break;
				v = v * 10 + (unsigned)(s[k] - '0');
			}
			*size = v;
		}
	}
	return caps;
}

/* ------------------------------------------------------------------ */
/* Body transformation */

#define BODY_MID 0x01      /* not at the beginning of a line */
#define BODY_AFTER_CR 0x02 /* CRLF already sent for a CR */

size_t
smtp_client_body_encode(int *state, const char *in, size_t len, char *out)
{
	size_t i, o = 0;
	int st = *state;

	for (i = 0; i < len; i++) {
		char ch = in[i];

		if ((st & BODY_AFTER_CR) && ch == '\n') {
			st &= ~BODY_AFTER_CR;
			continue;
		}
		st &= ~BODY_AFTER_CR;
		if (ch == '\r' || ch == '\n') {
			out[o++] = '\r';
			out[o++] = '\n';
			st = ch == '\r' ? BODY_AFTER_CR : 0;
			continue;
		}
		if (!(st & BODY_MID) && ch == '.')
			out[o++] = '.';
		out[o++] = ch;
		st |= BODY_MID;
	}
	*state = st;
	return o;
}

size_t
smtp_client_body_end(int *state, char *out)
{
	size_t o = 0;

	if (*state & BODY_MID) {
		out[o++] = '\r';
		out[o++] = '\n';
	}
	memcpy(out + o, ".\r\n", 3);
	*state = 0;
	return o + 3;
}
