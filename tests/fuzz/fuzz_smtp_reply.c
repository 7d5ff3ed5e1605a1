/*
 * fuzz_smtp_reply.c - libFuzzer target for the outbound client's reply
 * parser and capability reader.  Invariants: a parsed reply spans at
 * most len octets, has 1..SMTP_REPLY_LINES_MAX lines inside the buffer,
 * a code of 200..599, and its result text is printable ASCII.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_client.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	const char *buf = (const char *)data;
	size_t off = 0;

	while (off < len) {
		struct smtp_reply rep;
		struct result r;
		unsigned long long size;
		const char *why = NULL;
		int n = smtp_reply_parse(buf + off, len - off, &rep, &why);
		size_t i;

		if (n <= 0) {
			if (n < 0 && why == NULL)
				abort();
			break;
		}
		if ((size_t)n > len - off || rep.nlines < 1 ||
		    rep.nlines > SMTP_REPLY_LINES_MAX || rep.code < 200 ||
		    rep.code > 599)
			abort();
		for (i = 0; i < (size_t)rep.nlines; i++)
			if (rep.line[i].off + rep.line[i].len > (size_t)n)
				abort();
		smtp_reply_result(buf + off, &rep, &r);
		for (i = 0; r.text[i] != '\0'; i++)
			if (r.text[i] < 0x20 || r.text[i] > 0x7e)
				abort();
		(void)smtp_client_caps(buf + off, &rep, &size);
		off += (size_t)n;
	}
	return 0;
}
