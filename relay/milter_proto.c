/*
 * milter_proto.c - the pure milter packet codec: framing, NUL-separated
 * strings, SMFIR_REPLYCODE texts and the reply of a reject/tempfail
 * answer.  No I/O; milter.c, milter_msg.c and the fuzz target call it.  Every
 * length is checked before it is used.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "milter.h"

int
milter_packet_parse(const unsigned char *buf, size_t len, char *cmd,
                    const unsigned char **data, size_t *datalen)
{
	uint32_t n;

	if (len < 4)
		return 0;
	n = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 |
	    (uint32_t)buf[2] << 8 | buf[3];
	if (n == 0 || n > MILTER_PACKET_MAX)
		return -1;
	if (len - 4 < n)
		return 0;
	*cmd = (char)buf[4];
	*data = buf + 5;
	*datalen = n - 1;
	return (int)(n + 4);
}

int
milter_strings(const unsigned char *data, size_t len, const char **out, int n)
{
	size_t off = 0;
	int k = 0;

	while (off < len) {
		const unsigned char *nul = memchr(data + off, '\0', len - off);

		if (nul == NULL || k == n)
			return -1;
		out[k++] = (const char *)data + off;
		off = (size_t)(nul - data) + 1;
	}
	return k == n ? 0 : -1;
}

int
milter_replycode(const unsigned char *data, size_t len, char *out,
                 size_t outlen)
{
	size_t o = 0;

	if (outlen < 8 || len < 4 || (data[0] != '4' && data[0] != '5') ||
	    !isdigit(data[1]) || !isdigit(data[2]) ||
	    (data[3] != ' ' && data[3] != '-' && data[3] != '\0'))
		return -1;
	/* up to the NUL; a multi-line text is folded into one line */
	for (size_t i = 0; i < len && data[i] != '\0' && o + 1 < outlen; i++) {
		unsigned char c = data[i];

		if (c == '\r')
			continue;
		if (c == '\n') {
			/* "\r\n554-5.7.1 more" -> " more" after the code */
			out[o++] = ' ';
			size_t j = i + 1;

			if (j + 4 <= len && isdigit(data[j]) &&
			    isdigit(data[j + 1]) && isdigit(data[j + 2]) &&
			    (data[j + 3] == '-' || data[j + 3] == ' '))
				i += 4;
			continue;
		}
		out[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	out[o] = '\0';
	if (o < 3)
		return -1;
	if (o == 3 || out[3] != ' ') {
		/* "554" alone or "554-..." -> "554 " */
		if (o == 3 && o + 1 < outlen) {
			out[3] = ' ';
			out[4] = '\0';
		} else
			out[3] = ' ';
	}
	return 0;
}

int
milter_reply_text(int cmd, const unsigned char *data, size_t len, char *out,
                  size_t outlen)
{
	if (cmd == 'y')
		return milter_replycode(data, len, out, outlen);
	snprintf(out, outlen, "%s",
	         cmd == 'r'
	             ? "550 5.7.1 Command rejected"
	             : "451 4.7.1 Service unavailable - try again later");
	return 0;
}
