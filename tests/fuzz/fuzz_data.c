/*
 * fuzz_data.c - the SMTP DATA reader (relay/smtpd_data.c) on arbitrary
 * input cut at arbitrary places.  Invariants: any split gives the same
 * output, flags and end as one whole feed; the end of data is only ever
 * reached right after CRLF "." CRLF (or "." CRLF as the very first line);
 * without the BARE flag the output holds no bare CR or LF.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd.h"

struct out {
	char buf[65536];
	size_t len;
};

static void
emit(void *arg, const char *p, size_t n)
{
	struct out *o = arg;

	if (o->len + n > sizeof(o->buf))
		n = sizeof(o->buf) - o->len;
	memcpy(o->buf + o->len, p, n);
	o->len += n;
}

static struct out whole, split;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtpd_data a, b;
	size_t used_a, used_b = 0, pos = 0, cut = 0;
	const char *in;

	if (size < 1)
		return 0;
	/* the first octet seeds the cut points */
	cut = data[0];
	in = (const char *)data + 1;
	size--;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	whole.len = split.len = 0;
	used_a = smtpd_data_feed(&a, in, size, emit, &whole);
	while (pos < size && !b.done) {
		size_t n = 1 + (cut % 7);

		cut = cut * 31 + 7;
		if (n > size - pos)
			n = size - pos;
		size_t k = smtpd_data_feed(&b, in + pos, n, emit, &split);
		if (k > n || (k < n && !b.done))
			abort();
		pos += k;
		used_b = pos;
	}
	if (a.done != b.done || a.flags != b.flags || used_a != used_b ||
	    whole.len != split.len || memcmp(whole.buf, split.buf, whole.len))
		abort();
	if (a.done) {
		/* only CRLF.CRLF (or a first line of ".") ends the data */
		if (used_a < 3 || memcmp(in + used_a - 3, ".\r\n", 3) != 0)
			abort();
		if (used_a > 3 &&
		    (used_a < 5 || memcmp(in + used_a - 5, "\r\n", 2) != 0))
			abort();
	} else if (used_a != size)
		abort();
	if (!(a.flags & SMTPD_DATA_BARE)) {
		for (size_t i = 0; i < whole.len; i++) {
			if (whole.buf[i] == '\n' &&
			    (i == 0 || whole.buf[i - 1] != '\r'))
				abort();
			if (whole.buf[i] == '\r' && i + 1 < whole.len &&
			    whole.buf[i + 1] != '\n')
				abort();
		}
	}
	return 0;
}
