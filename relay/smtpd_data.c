/*
 * smtpd_data.c - the DATA reader of the SMTP server: undoes dot-stuffing
 * and finds the end of data, which is only ever CRLF "." CRLF, tracked
 * across any split of the input.  Bare CR, bare LF and NUL are flagged
 * (the session refuses such a message after reading to the real end), so
 * "\n.\n", "\n.\r\n", "\r.\r" and their kin can never end the data nor
 * start a second message.  Also the BDAT chunk-size verdict.  Pure: no
 * I/O, used by smtpd.c and fuzzed.
 */
#include <stddef.h>

#include "smtpd.h"

#define SMTPD_TEXT_MAX 1000 /* text line incl. CRLF */

enum {
	D_BOL,   /* at the start of a line */
	D_DOT,   /* "." at the start of a line */
	D_DOTCR, /* ".\r" at the start of a line */
	D_TEXT,  /* inside a line */
	D_CR,    /* "\r" inside a line */
};

size_t
smtpd_data_feed(struct smtpd_data *d, const char *buf, size_t len,
                void (*emit)(void *arg, const char *p, size_t n), void *arg)
{
	size_t i, start = 0;

	/* spans of plain text are emitted in one piece; the state machine
	 * only breaks a span where octets are dropped or held back */
#define FLUSH_TO(end)                                                          \
	do {                                                                   \
		if ((end) > start)                                             \
			emit(arg, buf + start, (end)-start);                   \
	} while (0)

	for (i = 0; i < len && !d->done; i++) {
		unsigned char c = (unsigned char)buf[i];

		switch (d->state) {
		case D_BOL:
			if (c == '.') {
				FLUSH_TO(i);
				start = i + 1; /* the dot is never emitted */
				d->state = D_DOT;
				continue;
			}
			d->state = D_TEXT;
			break;
		case D_DOT:
			if (c == '\r') {
				start = i + 1; /* held back */
				d->state = D_DOTCR;
				continue;
			}
			/* stuffed dot removed; the octet is text */
			d->state = D_TEXT;
			break;
		case D_DOTCR:
			if (c == '\n') {
				d->done = 1;
				return i + 1;
			}
			/* ".\r" followed by something else: bare CR */
			d->flags |= SMTPD_DATA_BARE;
			emit(arg, "\r", 1);
			start = i;
			d->state = D_TEXT;
			break;
		case D_CR:
			if (c == '\n') {
				d->state = D_BOL;
				d->linelen = 0;
				continue;
			}
			d->flags |= SMTPD_DATA_BARE;
			d->state = D_TEXT;
			break;
		default:
			break;
		}
		/* D_TEXT */
		if (c == '\r') {
			d->state = D_CR;
		} else if (c == '\n') {
			/* bare LF: never a line end, so "\n.\n" and
			 * "\n.\r\n" can never end the data */
			d->flags |= SMTPD_DATA_BARE;
		} else if (c == '\0') {
			d->flags |= SMTPD_DATA_NUL;
		}
		if (++d->linelen > SMTPD_TEXT_MAX - 2 && c != '\r')
			d->flags |= SMTPD_DATA_LONG;
	}
	FLUSH_TO(i); /* a held-back ".\r" is not in [start, i) */
	return i;
#undef FLUSH_TO
}

int
smtpd_bdat_verdict(uint64_t have, uint64_t n, uint64_t max)
{
	/* written to never overflow: have and n may be anything */
	if (max == 0 || (have <= max && n <= max - have))
		return SMTPD_BDAT_OK;
	if (n <= max)
		return SMTPD_BDAT_DISCARD;
	return SMTPD_BDAT_CLOSE;
}
