/*
 * config_filter.c - parse the filtering directives (config_filter.h).
 *
 * Called by config.c through four hooks; uses only config.h helpers
 * (durations, CIDRs).  Errors come back as text; config.c prefixes
 * FILE:LINE.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "config_filter.h"

void
config_filter_defaults(struct config *c)
{
	struct config_filter *f = calloc(1, sizeof(*f));

	c->filter = f;
	if (f == NULL)
		return;
	f->milter_default_action = FILTER_TEMPFAIL;
	f->milter_timeout = 30;
	f->client_rate_window = 60;
}

const char *
config_filter_action_str(enum filter_action a)
{
	return a == FILTER_ACCEPT   ? "accept"
	       : a == FILTER_REJECT ? "reject"
	                            : "tempfail";
}

/* config_filter_milter - "inet:HOST:PORT", "inet:[V6]:PORT", "unix:/PATH" */
static int
config_filter_milter(const char *s, struct config_milter *m)
{
	memset(m, 0, sizeof(*m));
	if (strlen(s) >= sizeof(m->spec))
		return -1;
	strcpy(m->spec, s);
	if (!strncmp(s, "unix:", 5)) {
		struct sockaddr_un *sun = (struct sockaddr_un *)&m->ss;

		if (s[5] != '/' || strlen(s + 5) >= sizeof(sun->sun_path))
			return -1;
		sun->sun_family = AF_UNIX;
		strcpy(sun->sun_path, s + 5);
		m->sslen = sizeof(*sun);
		return 0;
	}
	if (!strncmp(s, "inet:", 5) || !strncmp(s, "inet6:", 6)) {
		const char *h = strchr(s, ':') + 1, *colon;
		char host[INET6_ADDRSTRLEN + 2];
		char *end;
		long port;
		size_t hl;

		if (*h == '[') {
			const char *rb = strchr(h, ']');

			if (rb == NULL || rb[1] != ':')
				return -1;
			hl = rb - h - 1;
			h++;
			colon = rb + 1;
		} else {
			colon = strrchr(h, ':');
			if (colon == NULL)
				return -1;
			hl = colon - h;
		}
		if (hl == 0 || hl >= sizeof(host))
			return -1;
		memcpy(host, h, hl);
		host[hl] = '\0';
		errno = 0;
		port = strtol(colon + 1, &end, 10);
		if (errno || *end != '\0' || colon[1] == '\0' || port < 1 ||
		    port > 65535)
			return -1;
		if (!strcmp(host, "localhost"))
			strcpy(host, "127.0.0.1");
		struct sockaddr_in *sin = (struct sockaddr_in *)&m->ss;
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&m->ss;

		if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
			sin->sin_family = AF_INET;
			sin->sin_port = htons(port);
			m->sslen = sizeof(*sin);
			return 0;
		}
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
			sin6->sin6_family = AF_INET6;
			sin6->sin6_port = htons(port);
			m->sslen = sizeof(*sin6);
			return 0;
		}
	}
	return -1;
}

/* config_filter_octet - "N" or "[A..B]"; returns chars used or -1 */
static int
config_filter_octet(const char *p, unsigned char *lo, unsigned char *hi)
{
	const char *q = p;
	char *end;
	long a, b;

	if (*q == '[') {
		q++;
		if (!isdigit((unsigned char)*q))
			return -1;
		a = strtol(q, &end, 10);
		if (end[0] != '.' || end[1] != '.')
			return -1;
		q = end + 2;
		if (!isdigit((unsigned char)*q))
			return -1;
		b = strtol(q, &end, 10);
		if (*end != ']')
			return -1;
		q = end + 1;
	} else {
		if (!isdigit((unsigned char)*q))
			return -1;
		a = b = strtol(q, &end, 10);
		q = end;
	}
	if (a < 0 || b > 255 || a > b || end - p > 12)
		return -1;
	*lo = (unsigned char)a;
	*hi = (unsigned char)b;
	return (int)(q - p);
}

int
config_dnsbl_parse(const char *s, struct config_dnsbl *d)
{
	const char *eq = strchr(s, '=');
	size_t zl = eq != NULL ? (size_t)(eq - s) : strlen(s);

	memset(d, 0, sizeof(*d));
	if (strlen(s) >= sizeof(d->text) || zl == 0 || zl >= sizeof(d->zone))
		return -1;
	strcpy(d->text, s);
	memcpy(d->zone, s, zl);
	d->zone[zl] = '\0';
	if (d->zone[zl - 1] == '.')
		d->zone[zl - 1] = '\0';
	for (char *p = d->zone; *p; p++) {
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.' &&
		    *p != '_')
			return -1;
		*p = tolower((unsigned char)*p);
	}
	if (d->zone[0] == '\0' || d->zone[0] == '.' || strstr(d->zone, ".."))
		return -1;
	if (eq == NULL)
		return 0;
	const char *p = eq + 1;

	for (int i = 0; i < 4; i++) {
		int k = config_filter_octet(p, &d->lo[i], &d->hi[i]);

		if (k < 0)
			return -1;
		p += k;
		if (i < 3 && *p++ != '.')
			return -1;
	}
	if (*p != '\0')
		return -1;
	d->filter = 1;
	return 0;
}

int
config_dnsbl_match(const struct config_dnsbl *d, const unsigned char a[4])
{
	if (!d->filter)
		return a[0] == 127; /* any 127.0.0.0/8 answer lists */
	for (int i = 0; i < 4; i++)
		if (a[i] < d->lo[i] || a[i] > d->hi[i])
			return 0;
	return 1;
}

static int
config_filter_cidrs(const char *kw, char **v, int nv, struct config_cidr **list,
                    int *n, char *err, size_t errlen)
{
	for (int i = 0; i < nv; i++) {
		struct config_cidr r, *p;

		if (config_parse_cidr(v[i], &r) < 0) {
			snprintf(err, errlen,
			         "%s: bad address or network \"%s\"", kw, v[i]);
			return -1;
		}
		if ((p = realloc(*list, (*n + 1) * sizeof(r))) == NULL) {
			snprintf(err, errlen, "%s: out of memory", kw);
			return -1;
		}
		*list = p;
		p[(*n)++] = r;
	}
	return 0;
}

/* config_filter_rate - "60/m", "100/10m", "5/s" */
static int
config_filter_rate(const char *s, int *n, long *window)
{
	const char *slash = strchr(s, '/');
	char *end, unit[32];
	long v, w;

	if (slash == NULL || !isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end != slash || v < 1 || v > 1000000)
		return -1;
	if (strlen(slash + 1) + 2 > sizeof(unit) || slash[1] == '\0')
		return -1;
	snprintf(unit, sizeof(unit), "%s%s",
	         isdigit((unsigned char)slash[1]) ? "" : "1", slash + 1);
	w = config_parse_duration(unit);
	if (w < 1)
		return -1;
	*n = (int)v;
	*window = w;
	return 0;
}

int
config_filter_directive(struct config *c, char **tok, int n, char *err,
                        size_t errlen)
{
	struct config_filter *f = c->filter;
	const char *kw = tok[0];
	char **v = tok + 1;
	int nv = n - 1;

	if (strcmp(kw, "milter") && strcmp(kw, "milter_default_action") &&
	    strcmp(kw, "milter_timeout") && strcmp(kw, "dnsbl") &&
	    strcmp(kw, "dnsbl_allow") && strcmp(kw, "client_limit") &&
	    strcmp(kw, "client_rate") && strcmp(kw, "proxy_allow"))
		return 0;
	if (f == NULL) {
		snprintf(err, errlen, "%s: out of memory", kw);
		return -1;
	}
	if (nv < 1) {
		snprintf(err, errlen, "%s: missing value", kw);
		return -1;
	}
	if (!strcmp(kw, "milter")) {
		for (int i = 0; i < nv; i++) {
			struct config_milter m, *p;

			if (config_filter_milter(v[i], &m) < 0) {
				snprintf(err, errlen,
				         "milter: expected inet:ADDR:PORT or "
				         "unix:/PATH, not \"%s\"",
				         v[i]);
				return -1;
			}
			p = realloc(f->milter, (f->nmilter + 1) * sizeof(m));
			if (p == NULL)
				return -1;
			f->milter = p;
			p[f->nmilter++] = m;
		}
		return 1;
	}
	if (!strcmp(kw, "dnsbl")) {
		for (int i = 0; i < nv; i++) {
			struct config_dnsbl d, *p;

			if (config_dnsbl_parse(v[i], &d) < 0) {
				snprintf(err, errlen,
				         "dnsbl: expected ZONE or "
				         "ZONE=127.0.0.[2..11], not \"%s\"",
				         v[i]);
				return -1;
			}
			p = realloc(f->dnsbl, (f->ndnsbl + 1) * sizeof(d));
			if (p == NULL)
				return -1;
			f->dnsbl = p;
			p[f->ndnsbl++] = d;
		}
		return 1;
	}
	if (!strcmp(kw, "dnsbl_allow"))
		return config_filter_cidrs(kw, v, nv, &f->dnsbl_allow,
		                           &f->ndnsbl_allow, err, errlen) < 0
		           ? -1
		           : 1;
	if (!strcmp(kw, "proxy_allow"))
		return config_filter_cidrs(kw, v, nv, &f->proxy_allow,
		                           &f->nproxy_allow, err, errlen) < 0
		           ? -1
		           : 1;
	if (nv > 1) {
		snprintf(err, errlen, "%s: too many values", kw);
		return -1;
	}
	if (!strcmp(kw, "milter_default_action")) {
		if (!strcmp(v[0], "accept"))
			f->milter_default_action = FILTER_ACCEPT;
		else if (!strcmp(v[0], "tempfail"))
			f->milter_default_action = FILTER_TEMPFAIL;
		else if (!strcmp(v[0], "reject"))
			f->milter_default_action = FILTER_REJECT;
		else {
			snprintf(err, errlen,
			         "milter_default_action: expected accept, "
			         "tempfail or reject, not \"%s\"",
			         v[0]);
			return -1;
		}
		return 1;
	}
	if (!strcmp(kw, "milter_timeout")) {
		long d = config_parse_duration(v[0]);

		if (d < 1 || d > 3600) {
			snprintf(err, errlen,
			         "milter_timeout: bad duration \"%s\" (1s..1h)",
			         v[0]);
			return -1;
		}
		f->milter_timeout = d;
		return 1;
	}
	if (!strcmp(kw, "client_limit")) {
		char *end;
		long l;

		errno = 0;
		l = strtol(v[0], &end, 10);
		if (errno || *end != '\0' || v[0][0] == '\0' || l < 0 ||
		    l > 1000000) {
			snprintf(err, errlen,
			         "client_limit: bad number \"%s\" (0..1000000)",
			         v[0]);
			return -1;
		}
		f->client_limit = (int)l;
		return 1;
	}
	/* client_rate */
	if (!strcmp(v[0], "0")) {
		f->client_rate = 0;
		return 1;
	}
	if (config_filter_rate(v[0], &f->client_rate, &f->client_rate_window) <
	    0) {
		snprintf(err, errlen,
		         "client_rate: expected N/s, N/m, N/h or N/DURATION, "
		         "not \"%s\"",
		         v[0]);
		return -1;
	}
	return 1;
}

int
config_filter_check(struct config *c, char *err, size_t errlen)
{
	if (c->filter == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (int i = 0; i < c->nlisten; i++)
		if (c->listen[i].proxy && c->filter->nproxy_allow == 0) {
			snprintf(err, errlen,
			         "listen %s proxy: proxy_allow must name the "
			         "proxies allowed to send a PROXY header",
			         c->listen[i].text);
			return -1;
		}
	return 0;
}

void
config_filter_free(struct config *c)
{
	struct config_filter *f = c->filter;

	if (f == NULL)
		return;
	free(f->milter);
	free(f->dnsbl);
	free(f->dnsbl_allow);
	free(f->proxy_allow);
	free(f);
	c->filter = NULL;
}
