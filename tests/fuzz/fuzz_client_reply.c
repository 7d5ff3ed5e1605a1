/*
 * fuzz_client_reply.c - libFuzzer target for relay/client.c's pure parts.
 * The first octet picks the target: even, the reply parser run over the
 * whole input as a pipelined burst (each reply spans at most what is
 * left, has 1..CLIENT_LINES_MAX lines, a code of 200..599, a NUL-ended
 * printable text); odd, the DATA encoder at a split point (only CRLF line
 * ends, no "." line before the end, output within 2 * len + 5).
 * client.c is compiled in, so it fuzzes whichever client is built.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../relay/client.c"

static void
fuzz_replies(const char *p, size_t len)
{
	struct client_reply rep;
	const char *why;
	int n;

	while (len > 0) {
		n = client_reply_parse(p, len, &rep, &why);
		if (n <= 0) {
			if (n == 0 && len >= CLIENT_LINE_MAX &&
			    memchr(p, '\n', CLIENT_LINE_MAX) == NULL)
				abort();	/* must have said "bad" */
			return;
		}
		if ((size_t)n > len || rep.code < 200 || rep.code > 599 ||
		    rep.nlines < 1 || rep.nlines > CLIENT_LINES_MAX)
			abort();
		if (memchr(rep.text, '\0', sizeof(rep.text)) == NULL)
			abort();
		for (const char *t = rep.text; *t; t++)
			if (*t < 32 || *t > 126)
				abort();
		p += n;
		len -= (size_t)n;
	}
}

static void
fuzz_body(const char *p, size_t len, size_t split)
{
	char *out = malloc(2 * len + 8);
	size_t o = 0;
	int st = 0;

	if (out == NULL)
		return;
	if (split > len)
		split = len;
	o += client_body_encode(&st, p, split, out + o);
	o += client_body_encode(&st, p + split, len - split, out + o);
	o += client_body_end(&st, out + o);
	if (o > 2 * len + 5 || o < 3 || memcmp(out + o - 3, ".\r\n", 3) != 0)
		abort();
	for (size_t i = 0; i < o; i++) {
		if (out[i] == '\r' && (i + 1 >= o || out[i + 1] != '\n'))
			abort();
		if (out[i] == '\n' && (i == 0 || out[i - 1] != '\r'))
			abort();
		if (out[i] == '.' && (i == 0 || out[i - 1] == '\n') &&
		    i + 3 < o && out[i + 1] == '\r')
			abort();
	}
	free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (data[0] & 1)
		fuzz_body((const char *)data + 1, size - 1, data[0] >> 1);
	else
		fuzz_replies((const char *)data + 1, size - 1);
	return 0;
}
