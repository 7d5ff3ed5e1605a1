/*
 * fuzz_milter.c - libFuzzer target for the milter reply codec: packet
 * framing over a stream of replies, string splitting, reply codes.
 * Invariants: a packet lies within the input, strings lie within their
 * packet, a reply code is 4xx/5xx printable text.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "milter.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	size_t off = 0;

	while (off < len) {
		const unsigned char *d;
		size_t dl;
		char cmd;
		int n =
		    milter_packet_parse(data + off, len - off, &cmd, &d, &dl);

		if (n <= 0)
			break;
		if ((size_t)n > len - off || d + dl > data + len || d < data)
			abort();
		const char *s[3];

		for (int k = 1; k <= 3; k++)
			if (milter_strings(d, dl, s, k) == 0)
				for (int i = 0; i < k; i++)
					if ((const unsigned char *)s[i] < d ||
					    (const unsigned char *)s[i] >=
					        d + dl)
						abort();
		char out[512];

		if (milter_replycode(d, dl, out, sizeof(out)) == 0) {
			if ((out[0] != '4' && out[0] != '5') || out[3] != ' ')
				abort();
			for (size_t i = 0; out[i]; i++)
				if (out[i] < 0x20 || out[i] > 0x7e)
					abort();
		}
		off += n;
	}
	return 0;
}
