/*
 * config.c - read backmx.conf into a struct config.
 *
 * Called by main.c (start-up, -t, SIGHUP) and backmxctl (-c, to find the
 * control socket).  Every problem is reported as "FILE:LINE: message";
 * the whole file is always read so -t lists all problems at once.  The
 * domain table and recipient lists are built in policy/ (policy_*).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_private.h"
#include "config_filter.h"
#include "config_peer.h"
#include "config_rcpt.h"

#define CONFIG_MAX_TOKENS 64
#define CONFIG_LINE_MAX 4096

struct config_ctx {
	const char *file;
	int line;
	char *diag;
	size_t diaglen;
	int nerr;
	struct config *cfg;
	struct policy_domain *dom; /* inside a domain block */
	char base[PATH_MAX];       /* for relative paths */
};

/* config_msg - append "FILE:LINE: [warning: ]message\n" to the diagnostics */
void
config_msg(struct config_ctx *x, int is_error, const char *fmt, ...)
{
	size_t used = strlen(x->diag);
	va_list ap;
	int n;

	if (is_error)
		x->nerr++;
	if (x->diaglen == 0 || used + 1 >= x->diaglen)
		return;
	n = snprintf(x->diag + used, x->diaglen - used, "%s:%d: %s", x->file,
	             x->line, is_error ? "" : "warning: ");
	if (n < 0 || (size_t)n >= x->diaglen - used)
		return;
	used += n;
	va_start(ap, fmt);
	n = vsnprintf(x->diag + used, x->diaglen - used, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	used = strlen(x->diag);
	if (used + 1 < x->diaglen) {
		x->diag[used] = '\n';
		x->diag[used + 1] = '\0';
	}
}

/* config_tokenize - split a line into tokens; '#' comments, '"' quotes */
static int
config_tokenize(struct config_ctx *x, char *line, char **tok, int max)
{
	char *p = line, *out;
	int n = 0;

	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
			p++;
		if (*p == '\0' || *p == '#')
			break;
		if (n == max) {
			config_msg(x, 1, "too many words on one line");
			return -1;
		}
		if (*p == '{' || *p == '}') {
			tok[n++] = *p == '{' ? "{" : "}";
			p++;
			continue;
		}
		if (*p == '"') {
			out = ++p;
			tok[n++] = out;
			while (*p != '"') {
				if (*p == '\0') {
					config_msg(x, 1, "unterminated quote");
					return -1;
				}
				if (*p == '\\' && p[1] != '\0')
					p++;
				*out++ = *p++;
			}
			p++;
			*out = '\0';
			if (*p != '\0' && !isspace((unsigned char)*p)) {
				config_msg(x, 1, "garbage after quoted value");
				return -1;
			}
			if (*p != '\0')
				p++;
			continue;
		}
		tok[n++] = p;
		while (*p != '\0' && !isspace((unsigned char)*p) && *p != '#' &&
		       *p != '{' && *p != '}')
			p++;
		if (*p == '{' || *p == '}' || *p == '#') {
			/* keep the brace/comment for the next round */
			char c = *p;

			*p = '\0';
			if (c == '#')
				break;
			/* re-insert: tokens are pointers, so handle inline */
			if (n == max) {
				config_msg(x, 1, "too many words on one line");
				return -1;
			}
			tok[n++] = c == '{' ? "{" : "}";
			p++;
			continue;
		}
		if (*p != '\0')
			*p++ = '\0';
	}
	return n;
}

/* config_path - resolve a relative path against the config's base dir */
char *
config_path(struct config_ctx *x, const char *v)
{
	char buf[PATH_MAX];

	if (v[0] == '/' || x->base[0] == '\0')
		return strdup(v);
	if (snprintf(buf, sizeof(buf), "%s/%s", x->base, v) >= (int)sizeof(buf))
		return strdup(v);
	return strdup(buf);
}

static int
config_need_args(struct config_ctx *x, const char *kw, int have, int min,
                 int max)
{
	if (have < min) {
		config_msg(x, 1, "%s: missing value", kw);
		return -1;
	}
	if (max >= 0 && have > max) {
		config_msg(x, 1, "%s: too many values", kw);
		return -1;
	}
	return 0;
}

static void
config_set_str(struct config_ctx *x, char **dst, const char *v, int path)
{
	free(*dst);
	*dst = path ? config_path(x, v) : strdup(v);
	if (*dst == NULL)
		config_msg(x, 1, "out of memory");
}

static int
config_int(struct config_ctx *x, const char *kw, const char *v, long min,
           long max, int *out)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(v, &end, 10);
	if (errno || *end != '\0' || *v == '\0' || n < min || n > max) {
		config_msg(x, 1, "%s: bad number \"%s\" (%ld..%ld)", kw, v, min,
		           max);
		return -1;
	}
	*out = (int)n;
	return 0;
}

static int
config_duration(struct config_ctx *x, const char *kw, const char *v, long min,
                long *out)
{
	long d = config_parse_duration(v);

	if (d < min) {
		config_msg(x, 1,
		           "%s: bad duration \"%s\" (e.g. 30s, 5m, 4h, 5d)", kw,
		           v);
		return -1;
	}
	*out = d;
	return 0;
}

static int
config_bool(struct config_ctx *x, const char *kw, const char *v, int *out)
{
	if (!strcasecmp(v, "on") || !strcasecmp(v, "yes") || !strcmp(v, "1") ||
	    !strcasecmp(v, "true"))
		*out = 1;
	else if (!strcasecmp(v, "off") || !strcasecmp(v, "no") ||
	         !strcmp(v, "0") || !strcasecmp(v, "false"))
		*out = 0;
	else {
		config_msg(x, 1, "%s: expected on or off, not \"%s\"", kw, v);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* domain block directives: each takes exactly one value */

static const char *const config_domain_keywords[] = {
    "recipients",   "route",          "tls",
    "percent_hack", "queue_lifetime", "delay_warning",
    "verify_cache", "verify_down",    "accept_when",
    NULL,
};

int
config_is_domain_keyword(const char *s)
{
	for (int i = 0; config_domain_keywords[i]; i++)
		if (!strcmp(s, config_domain_keywords[i]))
			return 1;
	return 0;
}

static void
config_domain_directive(struct config_ctx *x, const char *kw, const char *v)
{
	struct policy_domain *d = x->dom;
	int lit, port;

	/* recipients, verify_*, accept_when: config_rcpt.c */
	if (!strcmp(kw, "route")) {
		if (!strcasecmp(v, "mx")) {
			d->route_static = 0;
			return;
		}
		if (config_parse_hostport(v, d->route_host,
		                          sizeof(d->route_host), &port, &lit,
		                          25) < 0) {
			config_msg(x, 1,
			           "route: expected mx, host:port or "
			           "[addr]:port, not \"%s\"",
			           v);
			return;
		}
		if (lit) {
			struct sockaddr_storage ss;
			socklen_t len;

			if (config_sockaddr(d->route_host, port, &ss, &len) <
			    0) {
				config_msg(x, 1, "route: bad address [%s]",
				           d->route_host);
				return;
			}
		} else if (!config_valid_hostname(d->route_host,
		                                  POLICY_DOMAIN_MAX)) {
			config_msg(x, 1, "route: bad host name \"%s\"",
			           d->route_host);
			return;
		}
		for (char *p = d->route_host; *p; p++)
			*p = tolower((unsigned char)*p);
		d->route_static = 1;
		d->route_literal = lit;
		d->route_port = port;
	} else if (!strcmp(kw, "tls")) {
		if (!strcasecmp(v, "may"))
			d->tls = POLICY_TLS_MAY;
		else if (!strcasecmp(v, "encrypt"))
			d->tls = POLICY_TLS_ENCRYPT;
		else if (!strcasecmp(v, "verify"))
			d->tls = POLICY_TLS_VERIFY;
		else if (!strcasecmp(v, "dane"))
			d->tls = POLICY_TLS_DANE;
		else if (!strcasecmp(v, "mta-sts"))
			d->tls = POLICY_TLS_MTASTS;
		else
			config_msg(x, 1,
			           "tls: expected may, encrypt, verify, dane "
			           "or mta-sts, not \"%s\"",
			           v);
	} else if (!strcmp(kw, "percent_hack")) {
		config_bool(x, kw, v, &d->percent_hack);
	} else if (!strcmp(kw, "queue_lifetime")) {
		config_duration(x, kw, v, 1, &d->queue_lifetime);
	} else if (!strcmp(kw, "delay_warning")) {
		/* 0 here turns it off for the domain (forward.c) */
		config_duration(x, kw, v, 0, &d->delay_warning);
		if (d->delay_warning == 0)
			d->delay_warning = -1;
	}
}

/* config_domain_end - checks when a block closes */
static void
config_domain_end(struct config_ctx *x)
{
	struct policy_domain *d = x->dom;
	char err[512];
	int saved = x->line;

	x->line = d->line;
	config_rcpt_domain_end(x, d);
	if (d->recipients_file == NULL && !d->recipients_any && d->nsrcs == 0)
		config_msg(x, 1,
		           "domain %s has no recipients line: a backup MX that "
		           "accepts every address is a spam magnet",
		           d->name);
	if (d->percent_hack && !d->route_static)
		config_msg(x, 1,
		           "domain %s: percent_hack on needs a static route "
		           "(host:port), never the public MX",
		           d->name);
	if (d->percent_hack && d->recipients_any)
		config_msg(x, 0,
		           "domain %s: percent_hack on with recipients *: any "
		           "local part at %s is reachable through us",
		           d->name, d->name);
	x->line = saved;
	if (d->recipients_file != NULL) {
		err[0] = '\0';
		if (policy_domain_load_recipients(d, err, sizeof(err)) < 0) {
			/* the message already carries FILE:LINE */
			size_t used = strlen(x->diag);

			x->nerr++;
			if (used + strlen(err) + 2 < x->diaglen) {
				strcat(x->diag, err);
				strcat(x->diag, "\n");
			}
		} else if (policy_domain_nrcpts(d) == 0 && !d->rcpt_async)
			config_msg(x, 0,
			           "domain %s: %s lists nobody: every "
			           "address but postmaster gets 550",
			           d->name, d->recipients_file);
	}
	x->dom = NULL;
}

/* ------------------------------------------------------------------ */
/* global directives */

static void
config_global_directive(struct config_ctx *x, char **tok, int n)
{
	struct config *c = x->cfg;
	const char *kw = tok[0];
	int nv = n - 1;
	char **v = tok + 1;
	struct config_listen *nl;
	struct config_cidr *nr;
	int64_t sz;
	char ebuf[256];
	int r;

	if (!strcmp(kw, "hostname")) {
		if (config_need_args(x, kw, nv, 1, 1) < 0)
			return;
		if (!config_valid_hostname(v[0], POLICY_DOMAIN_MAX)) {
			config_msg(x, 1, "hostname: \"%s\" is not a host name",
			           v[0]);
			return;
		}
		snprintf(c->policy->hostname, sizeof(c->policy->hostname), "%s",
		         v[0]);
		for (char *p = c->policy->hostname; *p; p++)
			*p = tolower((unsigned char)*p);
	} else if (!strcmp(kw, "hostname_alias")) {
		if (config_need_args(x, kw, nv, 1, -1) < 0)
			return;
		for (int i = 0; i < nv; i++) {
			if (!config_valid_hostname(v[i], POLICY_DOMAIN_MAX))
				config_msg(x, 1,
				           "hostname_alias: \"%s\" is not a "
				           "host name",
				           v[i]);
			else
				policy_add_alias(c->policy, v[i]);
		}
	} else if (!strcmp(kw, "listen")) {
		if (config_need_args(x, kw, nv, 1, -1) < 0)
			return;
		for (int i = 0; i < nv; i++) {
			struct config_listen l;
			char host[128];
			int port, lit;

			/* "listen ADDR proxy": ADDR expects a PROXY header */
			if (!strcmp(v[i], "proxy") && i > 0 && c->nlisten > 0) {
				c->listen[c->nlisten - 1].proxy = 1;
				continue;
			}
			memset(&l, 0, sizeof(l));
			if (config_parse_hostport(v[i], host, sizeof(host),
			                          &port, &lit, -1) < 0 ||
			    config_sockaddr(host, port, &l.ss, &l.sslen) < 0) {
				config_msg(x, 1,
				           "listen: expected ADDR:PORT or "
				           "[ADDR6]:PORT, not \"%s\"",
				           v[i]);
				continue;
			}
			snprintf(l.text, sizeof(l.text), "%s", v[i]);
			nl = realloc(c->listen, (c->nlisten + 1) * sizeof(l));
			if (nl == NULL) {
				config_msg(x, 1, "out of memory");
				return;
			}
			c->listen = nl;
			c->listen[c->nlisten++] = l;
		}
	} else if (!strcmp(kw, "spool") || !strcmp(kw, "control") ||
	           !strcmp(kw, "dns_trust_anchor") || !strcmp(kw, "tls_cert") ||
	           !strcmp(kw, "tls_key") || !strcmp(kw, "tls_ca") ||
	           !strcmp(kw, "pidfile")) {
		char **dst = !strcmp(kw, "spool")     ? &c->spool
		             : !strcmp(kw, "control") ? &c->control
		             : !strcmp(kw, "dns_trust_anchor")
		                 ? &c->dns_trust_anchor
		             : !strcmp(kw, "tls_cert") ? &c->tls_cert
		             : !strcmp(kw, "tls_key")  ? &c->tls_key
		             : !strcmp(kw, "tls_ca")   ? &c->tls_ca
		                                       : &c->pidfile;

		if (config_need_args(x, kw, nv, 1, 1) < 0)
			return;
		config_set_str(x, dst, v[0], 1);
		if (*dst == NULL)
			return;
		if (!strncmp(kw, "tls_", 4) ||
		    !strcmp(kw, "dns_trust_anchor")) {
			if (access(*dst, R_OK) < 0)
				config_msg(x, 1, "%s: cannot read %s: %s", kw,
				           *dst, strerror(errno));
		}
	} else if (!strcmp(kw, "user")) {
		if (config_need_args(x, kw, nv, 1, 1) < 0)
			return;
		if (getpwnam(v[0]) == NULL)
			config_msg(x, 1, "user: no such user \"%s\"", v[0]);
		config_set_str(x, &c->user, v[0], 0);
	} else if (!strcmp(kw, "dns") || !strcmp(kw, "metrics")) {
		char host[128];
		int port, lit;
		struct sockaddr_storage ss;
		socklen_t len;

		if (config_need_args(x, kw, nv, 1, 1) < 0)
			return;
		if (config_parse_hostport(v[0], host, sizeof(host), &port, &lit,
		                          !strcmp(kw, "dns") ? 53 : -1) < 0 ||
		    config_sockaddr(host, port, &ss, &len) < 0) {
			config_msg(x, 1, "%s: expected ADDR[:PORT], not \"%s\"",
			           kw, v[0]);
			return;
		}
		config_set_str(x, !strcmp(kw, "dns") ? &c->dns : &c->metrics,
		               v[0], 0);
	} else if (!strcmp(kw, "max_size")) {
		if (config_need_args(x, kw, nv, 1, 1) < 0)
			return;
		sz = config_parse_size(v[0]);
		if (sz < 65536)
			config_msg(x, 1,
			           "max_size: bad size \"%s\" (at least 64K; "
			           "e.g. 50M)",
			           v[0]);
		else
			c->max_size = (uint64_t)sz;
	} else if (!strcmp(kw, "spool_cache")) {
		if (config_need_args(x, kw, nv, 1, 1) < 0)
			return;
		sz = config_parse_size(v[0]);
		if (sz < 1024 * 1024 || sz > 4LL * 1024 * 1024 * 1024)
			config_msg(x, 1,
			           "spool_cache: bad size \"%s\" (1M to 4G; "
			           "e.g. 16M)",
			           v[0]);
		else
			c->spool_cache = (uint64_t)sz;
	} else if (!strcmp(kw, "max_recipients")) {
		if (config_need_args(x, kw, nv, 1, 1) < 0 ||
		    config_int(x, kw, v[0], 1, 100000, &c->max_recipients) < 0)
			return;
		if (c->max_recipients < 100)
			config_msg(x, 0,
			           "max_recipients %d: RFC 5321 4.5.3.1.8 "
			           "requires accepting at least 100",
			           c->max_recipients);
	} else if (!strcmp(kw, "max_hops")) {
		if (config_need_args(x, kw, nv, 1, 1) == 0)
			config_int(x, kw, v[0], 1, 10000, &c->max_hops);
	} else if (!strcmp(kw, "max_clients")) {
		if (config_need_args(x, kw, nv, 1, 1) == 0)
			config_int(x, kw, v[0], 1, 1000000, &c->max_clients);
	} else if (!strcmp(kw, "workers")) {
		/* accept processes (worker.c); 0 = one per online core */
		if (config_need_args(x, kw, nv, 1, 1) == 0) {
			if (!strcmp(v[0], "auto"))
				c->workers = 0;
			else
				config_int(x, kw, v[0], 1, CONFIG_WORKERS_MAX,
				           &c->workers);
		}
	} else if (!strcmp(kw, "max_clients_per_ip")) {
		if (config_need_args(x, kw, nv, 1, 1) == 0)
			config_int(x, kw, v[0], 1, 1000000,
			           &c->max_clients_per_ip);
	} else if (!strcmp(kw, "max_deliveries")) {
		if (config_need_args(x, kw, nv, 1, 1) == 0)
			config_int(x, kw, v[0], 1, 100000, &c->max_deliveries);
	} else if (!strcmp(kw, "max_per_destination")) {
		if (config_need_args(x, kw, nv, 1, 1) == 0)
			config_int(x, kw, v[0], 1, 100000,
			           &c->max_per_destination);
	} else if (!strcmp(kw, "drain_rate")) {
		if (config_need_args(x, kw, nv, 1, 1) == 0)
			config_int(x, kw, v[0], 0, 1000000, &c->drain_rate);
	} else if (!strcmp(kw, "etrn_rate")) {
		if (config_need_args(x, kw, nv, 1, 1) == 0)
			config_int(x, kw, v[0], 1, 100000, &c->etrn_rate);
	} else if (!strcmp(kw, "timeout") || !strcmp(kw, "queue_lifetime") ||
	           !strcmp(kw, "delay_warning") ||
	           !strcmp(kw, "connect_timeout") ||
	           !strcmp(kw, "command_timeout") ||
	           !strcmp(kw, "data_timeout")) {
		long *dst =
		    !strcmp(kw, "timeout")           ? &c->timeout
		    : !strcmp(kw, "queue_lifetime")  ? &c->queue_lifetime
		    : !strcmp(kw, "delay_warning")   ? &c->delay_warning
		    : !strcmp(kw, "connect_timeout") ? &c->connect_timeout
		    : !strcmp(kw, "command_timeout") ? &c->command_timeout
		                                     : &c->data_timeout;

		if (config_need_args(x, kw, nv, 1, 1) == 0)
			config_duration(x, kw, v[0],
			                !strcmp(kw, "delay_warning") ? 0 : 1,
			                dst);
	} else if (!strcmp(kw, "retry")) {
		long *steps;

		if (config_need_args(x, kw, nv, 1, 32) < 0)
			return;
		if ((steps = calloc(nv, sizeof(*steps))) == NULL) {
			config_msg(x, 1, "out of memory");
			return;
		}
		for (int i = 0; i < nv; i++)
			if (config_duration(x, kw, v[i], 1, &steps[i]) < 0) {
				free(steps);
				return;
			}
		free(c->retry);
		c->retry = steps;
		c->nretry = nv;
	} else if (!strcmp(kw, "etrn_allow")) {
		if (config_need_args(x, kw, nv, 1, -1) < 0)
			return;
		for (int i = 0; i < nv; i++) {
			struct config_cidr r;

			if (config_parse_cidr(v[i], &r) < 0) {
				config_msg(x, 1,
				           "etrn_allow: bad address or "
				           "network \"%s\"",
				           v[i]);
				continue;
			}
			nr = realloc(c->etrn_allow,
			             (c->netrn_allow + 1) * sizeof(r));
			if (nr == NULL) {
				config_msg(x, 1, "out of memory");
				return;
			}
			c->etrn_allow = nr;
			c->etrn_allow[c->netrn_allow++] = r;
		}
	} else if ((r = config_filter_directive(c, tok, n, ebuf,
	                                        sizeof(ebuf))) != 0) {
		if (r < 0)
			config_msg(x, 1, "%s", ebuf);
	} else if (config_rcpt_global(x, c, kw, v, nv)) {
		/* callout_*, verify_cache_max: config_rcpt.c */
	} else if (config_peer_global(x, c, kw, v, nv)) {
		/* peer, peer_*, takeover_after: config_peer.c */
	} else if (config_is_domain_keyword(kw)) {
		config_msg(x, 1, "%s: only allowed inside a domain block", kw);
	} else {
		config_msg(x, 1, "unknown directive \"%s\"", kw);
	}
}

/* config_defaults - the built-in values; -1 when out of memory */
static int
config_defaults(struct config *c)
{
	static const long retry[] = {60, 300, 900, 1800, 3600};
	char host[256];

	c->spool = strdup("/var/spool/backmx");
	c->control = strdup("/run/backmx/control.sock");
	c->max_size = 50ULL * 1024 * 1024;
	c->max_recipients = 100;
	c->max_hops = 100;
	c->max_clients = 1000;
	c->max_clients_per_ip = 50;
	c->workers = 1;
	c->timeout = 300;
	c->queue_lifetime = 5 * 86400;
	c->nretry = sizeof(retry) / sizeof(retry[0]);
	c->retry = malloc(sizeof(retry));
	if (c->spool == NULL || c->control == NULL || c->retry == NULL)
		return -1;
	memcpy(c->retry, retry, sizeof(retry));
	c->max_deliveries = 100;
	c->max_per_destination = 20;
	c->drain_rate = 0;
	c->connect_timeout = 30;
	c->command_timeout = 300;
	c->data_timeout = 600;
	c->etrn_rate = 10;
	config_rcpt_defaults(c);
	if (gethostname(host, sizeof(host)) < 0)
		strcpy(host, "localhost");
	host[sizeof(host) - 1] = '\0';
	c->policy = policy_new(host);
	config_filter_defaults(c);
	return c->policy == NULL ? -1 : 0;
}

struct config *
config_load(const char *path, char *diag, size_t diaglen, int *nerr)
{
	struct config_ctx x;
	struct config *c;
	char line[CONFIG_LINE_MAX], *tok[CONFIG_MAX_TOKENS];
	FILE *fp;
	int n, i;

	memset(&x, 0, sizeof(x));
	if (diaglen > 0)
		diag[0] = '\0';
	x.file = path;
	x.diag = diag;
	x.diaglen = diaglen;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	x.cfg = c;
	if (config_defaults(c) < 0 || (c->path = strdup(path)) == NULL) {
		config_msg(&x, 1, "out of memory");
		config_free(c);
		*nerr = 1;
		return NULL;
	}
	/* relative file names are taken from the current directory, as a
	 * shell user would expect (make run uses contrib/demo.conf) */
	if (getcwd(x.base, sizeof(x.base)) == NULL)
		x.base[0] = '\0';

	if ((fp = fopen(path, "r")) == NULL) {
		config_msg(&x, 1, "cannot open: %s", strerror(errno));
		*nerr = x.nerr;
		config_free(c);
		return NULL;
	}
	while (fgets(line, sizeof(line), fp) != NULL) {
		x.line++;
		if (strchr(line, '\n') == NULL && !feof(fp)) {
			int ch;

			config_msg(&x, 1, "line too long");
			while ((ch = fgetc(fp)) != EOF && ch != '\n')
				;
			continue;
		}
		n = config_tokenize(&x, line, tok, CONFIG_MAX_TOKENS);
		if (n <= 0)
			continue;
		i = 0;
		while (i < n) {
			if (x.dom != NULL) {
				if (!strcmp(tok[i], "}")) {
					config_domain_end(&x);
					i++;
					continue;
				}
				if (!config_is_domain_keyword(tok[i])) {
					config_msg(&x, 1,
					           "unknown domain directive "
					           "\"%s\"",
					           tok[i]);
					i = n;
					break;
				}
				if (config_rcpt_is_keyword(tok[i])) {
					i = config_rcpt_domain(&x, x.dom, tok,
					                       n, i);
					continue;
				}
				if (i + 1 >= n || !strcmp(tok[i + 1], "}") ||
				    !strcmp(tok[i + 1], "{")) {
					config_msg(&x, 1, "%s: missing value",
					           tok[i]);
					i++;
					continue;
				}
				config_domain_directive(&x, tok[i], tok[i + 1]);
				i += 2;
				continue;
			}
			if (!strcmp(tok[i], "domain")) {
				const char *name = i + 1 < n ? tok[i + 1] : "";

				if (i + 2 >= n ||
				    strcmp(tok[i + 2], "{") != 0) {
					config_msg(&x, 1,
					           "domain: expected "
					           "\"domain NAME {\"");
					i = n;
					break;
				}
				if (!config_valid_hostname(name,
				                           POLICY_DOMAIN_MAX)) {
					config_msg(&x, 1,
					           "domain: \"%s\" is not a "
					           "domain name",
					           name);
					/* parse the block anyway, into a
					 * throwaway name, to find more errors
					 */
					name = "invalid.invalid";
				}
				x.dom = policy_add_domain(c->policy, name);
				if (x.dom == NULL) {
					config_msg(&x, 1,
					           "domain %s: defined twice",
					           name);
					x.dom = policy_add_domain(
					    c->policy, "dup.invalid");
					if (x.dom == NULL) {
						i = n;
						break;
					}
				}
				x.dom->line = x.line;
				i += 3;
				continue;
			}
			if (!strcmp(tok[i], "{") || !strcmp(tok[i], "}")) {
				config_msg(&x, 1, "unexpected \"%s\"", tok[i]);
				i++;
				continue;
			}
			config_global_directive(&x, tok + i, n - i);
			i = n;
		}
	}
	fclose(fp);
	if (x.dom != NULL) {
		config_msg(&x, 1, "domain %s: missing closing }", x.dom->name);
		config_domain_end(&x);
	}
	if (c->nlisten == 0) {
		struct config_listen l;

		memset(&l, 0, sizeof(l));
		config_sockaddr("0.0.0.0", 25, &l.ss, &l.sslen);
		strcpy(l.text, "0.0.0.0:25");
		if ((c->listen = malloc(sizeof(l))) == NULL)
			config_msg(&x, 1, "out of memory");
		else {
			c->listen[0] = l;
			c->nlisten = 1;
		}
	}
	x.line = 0;
	if (c->policy->ndomains == 0)
		config_msg(&x, 1,
		           "no domain blocks: every recipient would be "
		           "refused (an empty or truncated file?)");
	if ((c->tls_cert == NULL) != (c->tls_key == NULL))
		config_msg(&x, 1,
		           "tls_cert and tls_key must be given together");
	if (config_filter_check(c, line, sizeof(line)) < 0)
		config_msg(&x, 1, "%s", line);
	config_peer_end(&x, c);
	c->hostname = c->policy->hostname;
	*nerr = x.nerr;
	if (x.nerr > 0) {
		config_free(c);
		return NULL;
	}
	return c;
}

void
config_free(struct config *c)
{
	if (c == NULL)
		return;
	policy_free(c->policy);
	free(c->path);
	free(c->listen);
	free(c->spool);
	free(c->control);
	free(c->user);
	free(c->dns);
	free(c->dns_trust_anchor);
	free(c->tls_cert);
	free(c->tls_key);
	free(c->tls_ca);
	free(c->metrics);
	free(c->pidfile);
	free(c->retry);
	free(c->etrn_allow);
	config_filter_free(c);
	config_peer_free(c);
	free(c);
}
