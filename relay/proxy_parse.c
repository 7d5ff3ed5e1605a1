/*
 * proxy_parse.c - the pure PROXY protocol v1/v2 header parser
 * (haproxy's proxy-protocol.txt).  No I/O: proxy.c feeds it what it
 * peeked from the socket; the unit test and fuzz target feed it bytes.
 *
 * Strict: v1 must be exactly "PROXY TCP4|TCP6|UNKNOWN ..." with single
 * spaces, numeric addresses and ports, within 107 octets; v2 must carry
 * the 12-octet signature, version 2, command LOCAL or PROXY, and at most
 * PROXY_V2_MAX octets in all.  UDP and UNIX families are refused (an
 * SMTP client is TCP).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "proxy.h"

static const unsigned char proxy_v2_sig[12] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
static const char proxy_v1_sig[] = "PROXY ";

/* proxy_v1_port - decimal 0..65535, no sign, no leading zero */
static int
proxy_v1_port(const char *p, size_t n)
{
	long v = 0;

	if (n == 0 || n > 5 || (n > 1 && p[0] == '0'))
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (p[i] - '0');
	}
	return v > 65535 ? -1 : (int)v;
}

static int
proxy_set(struct sockaddr_storage *ss, int family, const char *addr, int port)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		if (inet_pton(AF_INET, addr, &sin->sin_addr) != 1)
			return -1;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		return sizeof(*sin);
	}
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) != 1)
		return -1;
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(port);
	return sizeof(*sin6);
}

static int
proxy_parse_v1(const unsigned char *buf, size_t len, struct proxy_hdr *h,
               const char **why)
{
	char line[PROXY_V1_MAX + 1], *f[6];
	size_t end, n = len < PROXY_V1_MAX ? len : PROXY_V1_MAX;
	int nf = 0, family, sport, dport;
	char *p;

	for (end = 0; end < n; end++) {
		if (buf[end] == '\r')
			break;
		if (buf[end] == '\n' || buf[end] < 0x20 || buf[end] > 0x7e) {
			*why = "v1 header with a bad character";
			return -1;
		}
	}
	if (end == n) {
		if (len >= PROXY_V1_MAX) {
			*why = "v1 header longer than 107 octets";
			return -1;
		}
		return 0;
	}
	/* CRLF included: a CR at octet 107 leaves no room for its LF */
	if (end + 2 > PROXY_V1_MAX) {
		*why = "v1 header longer than 107 octets";
		return -1;
	}
	if (end + 1 >= len)
		return 0; /* the LF is still to come */
	if (buf[end + 1] != '\n') {
		*why = "v1 header: CR without LF";
		return -1;
	}
	memcpy(line, buf, end);
	line[end] = '\0';
	memset(h, 0, sizeof(*h));
	h->version = 1;
	h->len = end + 2;
	/* split on single spaces; an empty field is an error */
	p = line + sizeof(proxy_v1_sig) - 1;
	f[nf++] = p;
	for (; *p != '\0'; p++) {
		if (*p != ' ')
			continue;
		*p = '\0';
		if (nf == 6) {
			*why = "v1 header: too many fields";
			return -1;
		}
		f[nf++] = p + 1;
	}
	if (!strcmp(f[0], "UNKNOWN")) {
		/* the proxy does not know the client: the rest is ignored */
		h->local = 1;
		return (int)h->len;
	}
	for (int i = 0; i < nf; i++)
		if (f[i][0] == '\0') {
			*why = "v1 header: empty field";
			return -1;
		}
	if (!strcmp(f[0], "TCP4"))
		family = AF_INET;
	else if (!strcmp(f[0], "TCP6"))
		family = AF_INET6;
	else {
		*why = "v1 header: protocol not TCP4, TCP6 or UNKNOWN";
		return -1;
	}
	if (nf != 5) {
		*why = "v1 header: expected 5 fields";
		return -1;
	}
	sport = proxy_v1_port(f[3], strlen(f[3]));
	dport = proxy_v1_port(f[4], strlen(f[4]));
	if (sport < 0 || dport < 0) {
		*why = "v1 header: bad port";
		return -1;
	}
	int sl = proxy_set(&h->src, family, f[1], sport);

	if (sl < 0 || proxy_set(&h->dst, family, f[2], dport) < 0) {
		*why = "v1 header: bad address";
		return -1;
	}
	h->srclen = sl;
	return (int)h->len;
}

static int
proxy_parse_v2(const unsigned char *buf, size_t len, struct proxy_hdr *h,
               const char **why)
{
	size_t alen, total;
	int cmd, fam;

	if (len < PROXY_V2_HDR)
		return 0;
	if ((buf[12] >> 4) != 2) {
		*why = "v2 header: version not 2";
		return -1;
	}
	cmd = buf[12] & 0x0f;
	if (cmd > 1) {
		*why = "v2 header: command not LOCAL or PROXY";
		return -1;
	}
	fam = buf[13];
	alen = (size_t)buf[14] << 8 | buf[15];
	total = PROXY_V2_HDR + alen;
	if (total > PROXY_V2_MAX) {
		*why = "v2 header longer than the limit";
		return -1;
	}
	/* the family is checked before the whole header is in, so a bad
	 * one fails at once */
	if (cmd == 1 && fam != 0x11 && fam != 0x21) {
		*why = "v2 header: family not TCP over IPv4 or IPv6";
		return -1;
	}
	if (cmd == 1 &&
	    ((fam == 0x11 && alen < 12) || (fam == 0x21 && alen < 36))) {
		*why = "v2 header: address block too short";
		return -1;
	}
	if (len < total)
		return 0;
	memset(h, 0, sizeof(*h));
	h->version = 2;
	h->len = total;
	if (cmd == 0) {
		/* LOCAL: the proxy's own connection (health check);
		 * whatever follows in the block is ignored, as specified */
		h->local = 1;
		return (int)total;
	}
	const unsigned char *a = buf + PROXY_V2_HDR;

	if (fam == 0x11) {
		struct sockaddr_in *s = (struct sockaddr_in *)&h->src;
		struct sockaddr_in *d = (struct sockaddr_in *)&h->dst;

		s->sin_family = d->sin_family = AF_INET;
		memcpy(&s->sin_addr, a, 4);
		memcpy(&d->sin_addr, a + 4, 4);
		memcpy(&s->sin_port, a + 8, 2);
		memcpy(&d->sin_port, a + 10, 2);
		h->srclen = sizeof(*s);
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&h->src;
		struct sockaddr_in6 *d = (struct sockaddr_in6 *)&h->dst;

		s->sin6_family = d->sin6_family = AF_INET6;
		memcpy(&s->sin6_addr, a, 16);
		memcpy(&d->sin6_addr, a + 16, 16);
		memcpy(&s->sin6_port, a + 32, 2);
		memcpy(&d->sin6_port, a + 34, 2);
		h->srclen = sizeof(*s);
	}
	return (int)total;
}

int
proxy_parse(const unsigned char *buf, size_t len, struct proxy_hdr *h,
            const char **why)
{
	size_t k;

	*why = NULL;
	if (len == 0)
		return 0;
	if (buf[0] == proxy_v2_sig[0]) {
		k = len < sizeof(proxy_v2_sig) ? len : sizeof(proxy_v2_sig);
		if (memcmp(buf, proxy_v2_sig, k) != 0) {
			*why = "not a PROXY header (bad v2 signature)";
			return -1;
		}
		return k < sizeof(proxy_v2_sig)
		           ? 0
		           : proxy_parse_v2(buf, len, h, why);
	}
	k = len < sizeof(proxy_v1_sig) - 1 ? len : sizeof(proxy_v1_sig) - 1;
	if (memcmp(buf, proxy_v1_sig, k) != 0) {
		*why = "not a PROXY header";
		return -1;
	}
	if (k < sizeof(proxy_v1_sig) - 1)
		return 0;
	return proxy_parse_v1(buf, len, h, why);
}
