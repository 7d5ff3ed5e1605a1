/*
 * config_util.c - the value parsers of backmx.conf (sizes, durations,
 * host:port, CIDR) and the etrn_allow test.  Pure: no I/O.  Split out
 * of config.c, which keeps the directive chain.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "config_private.h"

int64_t
config_parse_size(const char *s)
{
	char *end;
	unsigned long long v;
	uint64_t mul = 1;

	if (s == NULL || !isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0)
		return -1;
	switch (toupper((unsigned char)*end)) {
	case '\0':
		break;
	case 'K':
		mul = 1024;
		end++;
		break;
	case 'M':
		mul = 1024 * 1024;
		end++;
		break;
	case 'G':
		mul = 1024ULL * 1024 * 1024;
		end++;
		break;
	default:
		return -1;
	}
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end != '\0' || v > (uint64_t)INT64_MAX / mul)
		return -1;
	return (int64_t)(v * mul);
}

long
config_parse_duration(const char *s)
{
	char *end;
	long v, mul = 1;

	if (s == NULL || !isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || v < 0)
		return -1;
	switch (*end) {
	case '\0':
	case 's':
		break;
	case 'm':
		mul = 60;
		break;
	case 'h':
		mul = 3600;
		break;
	case 'd':
		mul = 86400;
		break;
	case 'w':
		mul = 7 * 86400;
		break;
	default:
		return -1;
	}
	if (*end != '\0' && end[1] != '\0')
		return -1;
	if (v > LONG_MAX / mul)
		return -1;
	return v * mul;
}

/*
 * config_parse_hostport - "addr:port", "[v6]:port", "host:port",
 * "[addr]:port" into a host (brackets removed) and port; *literal is set
 * when the host was bracketed.  Returns 0 or -1.
 */
int
config_parse_hostport(const char *s, char *host, size_t hostlen, int *port,
                      int *literal, int default_port)
{
	const char *colon, *hs, *he;
	long p = default_port;
	char *end;

	*literal = 0;
	if (*s == '[') {
		hs = s + 1;
		he = strchr(hs, ']');
		if (he == NULL)
			return -1;
		*literal = 1;
		colon = he[1] == ':' ? he + 1 : NULL;
		if (he[1] != '\0' && colon == NULL)
			return -1;
	} else {
		hs = s;
		colon = strrchr(s, ':');
		if (colon != NULL && strchr(s, ':') != colon)
			return -1; /* bare IPv6 needs brackets */
		he = colon != NULL ? colon : s + strlen(s);
	}
	if (colon != NULL) {
		errno = 0;
		p = strtol(colon + 1, &end, 10);
		if (errno || *end != '\0' || p < 1 || p > 65535 ||
		    colon[1] == '\0')
			return -1;
	} else if (default_port < 0)
		return -1;
	if (he <= hs || (size_t)(he - hs) >= hostlen)
		return -1;
	memcpy(host, hs, he - hs);
	host[he - hs] = '\0';
	*port = (int)p;
	return 0;
}

/* config_sockaddr - numeric host + port into a sockaddr */
int
config_sockaddr(const char *host, int port, struct sockaddr_storage *ss,
                socklen_t *len)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		*len = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		*len = sizeof(*sin6);
		return 0;
	}
	return -1;
}

int
config_parse_cidr(const char *s, struct config_cidr *c)
{
	char buf[INET6_ADDRSTRLEN + 8], *slash, *end;
	long bits;

	if (strlen(s) >= sizeof(buf))
		return -1;
	strcpy(buf, s);
	slash = strchr(buf, '/');
	if (slash != NULL)
		*slash++ = '\0';
	memset(c, 0, sizeof(*c));
	if (inet_pton(AF_INET, buf, c->addr) == 1) {
		c->family = AF_INET;
		c->bits = 32;
	} else if (inet_pton(AF_INET6, buf, c->addr) == 1) {
		c->family = AF_INET6;
		c->bits = 128;
	} else
		return -1;
	if (slash != NULL) {
		errno = 0;
		bits = strtol(slash, &end, 10);
		if (errno || *end != '\0' || *slash == '\0' || bits < 0 ||
		    bits > c->bits)
			return -1;
		c->bits = (int)bits;
	}
	return 0;
}

int
config_etrn_allowed(const struct config *c, const struct sockaddr *sa)
{
	return config_cidr_match(c->etrn_allow, c->netrn_allow, sa);
}

/* config_cidr_match - is sa (IPv4-mapped seen as IPv4) in one of list[n]? */
int
config_cidr_match(const struct config_cidr *list, int n,
                  const struct sockaddr *sa)
{
	const unsigned char *a;
	int family, i;
	unsigned char v4[4];

	if (sa->sa_family == AF_INET) {
		family = AF_INET;
		a = (const unsigned char *)&((const struct sockaddr_in *)sa)
		        ->sin_addr;
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

		a = (const unsigned char *)&s6->sin6_addr;
		family = AF_INET6;
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			memcpy(v4, a + 12, 4);
			a = v4;
			family = AF_INET;
		}
	} else
		return 0;
	for (i = 0; i < n; i++) {
		const struct config_cidr *r = &list[i];
		int full = r->bits / 8, rest = r->bits % 8;

		if (r->family != family)
			continue;
		if (memcmp(a, r->addr, full) != 0)
			continue;
		if (rest != 0) {
			unsigned char mask =
			    (unsigned char)(0xff << (8 - rest));

			if ((a[full] & mask) != (r->addr[full] & mask))
				continue;
		}
		return 1;
	}
	return 0;
}

/* config_valid_hostname - LDH labels of 1..63 octets separated by dots,
 * at most max octets in all */
int
config_valid_hostname(const char *s, size_t max)
{
	size_t len = strlen(s), lab = 0;

	if (len == 0 || len > max)
		return 0;
	for (const char *p = s; *p; p++) {
		if (*p == '.') {
			if (lab == 0)
				return 0;
			lab = 0;
			continue;
		}
		if (!isalnum((unsigned char)*p) && *p != '-')
			return 0;
		if (++lab > 63)
			return 0;
	}
	return lab > 0;
}
