/*
 * config_rcpt.c - parsing the recipient-source directives (see
 * config_rcpt.h) into struct policy_domain and struct config.  The -t
 * checks of ldap:FILE (keys, filter, bind_pw file mode) run here through
 * ldap_src_check_file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_rcpt.h"
#include "ldap_src.h"

static const char *const rcpt_keywords[] = {
    "recipients", "verify_cache", "verify_down", "accept_when", NULL,
};

void
config_rcpt_defaults(struct config *c)
{
	c->callout_timeout = 10;
	c->callout_limit = 4;
	c->callout_rate = 60;
	c->verify_cache_max = 100000;
}

int
config_rcpt_is_keyword(const char *kw)
{
	for (int i = 0; rcpt_keywords[i] != NULL; i++)
		if (!strcmp(kw, rcpt_keywords[i]))
			return 1;
	return 0;
}

static void
rcpt_sources(struct config_ctx *x, struct policy_domain *d, char **v, int nv)
{
	char *path;

	if (d->recipients_file != NULL || d->recipients_any || d->nsrcs > 0) {
		config_msg(x, 1, "recipients: given twice for %s", d->name);
		return;
	}
	for (int i = 0; i < nv; i++) {
		if (!strcmp(v[i], "*")) {
			d->recipients_any = 1;
			policy_domain_add_src(d, POLICY_SRC_ANY, NULL);
			config_msg(x, 0,
			           "domain %s accepts any local part "
			           "(recipients *): backscatter and spam "
			           "magnet; list the valid recipients instead",
			           d->name);
		} else if (!strcasecmp(v[i], "callout")) {
			if (policy_domain_has_src(d, POLICY_SRC_CALLOUT))
				config_msg(x, 1,
				           "recipients: callout given "
				           "twice");
			else
				policy_domain_add_src(d, POLICY_SRC_CALLOUT,
				                      NULL);
		} else if (!strncmp(v[i], "ldap:", 5)) {
			if (v[i][5] == '\0') {
				config_msg(x, 1,
				           "recipients: ldap: needs a "
				           "file (ldap:/etc/backmx/x.ldap)");
				continue;
			}
			path = config_path(x, v[i] + 5);
			if (path == NULL ||
			    policy_domain_add_src(d, POLICY_SRC_LDAP, path) < 0)
				config_msg(x, 1, "out of memory");
			free(path);
		} else {
			path = config_path(x, v[i]);
			if (path == NULL ||
			    (d->recipients_file == NULL &&
			     (d->recipients_file = strdup(path)) == NULL) ||
			    policy_domain_add_src(d, POLICY_SRC_FILE, path) < 0)
				config_msg(x, 1, "out of memory");
			free(path);
		}
	}
	if (d->recipients_any && d->rcpt_async)
		config_msg(x, 0,
		           "domain %s: recipients * with ldap: or "
		           "callout: * accepts everything, the other sources "
		           "are never asked",
		           d->name);
}

static void
rcpt_one(struct config_ctx *x, struct policy_domain *d, const char *kw,
         char **v, int nv)
{
	if (!strcmp(kw, "recipients")) {
		rcpt_sources(x, d, v, nv);
		return;
	}
	if (!strcmp(kw, "verify_cache")) {
		long pos, neg;

		if (nv != 2 || (pos = config_parse_duration(v[0])) < 1 ||
		    (neg = config_parse_duration(v[1])) < 1) {
			config_msg(x, 1,
			           "verify_cache: expected two durations "
			           "POSITIVE NEGATIVE (e.g. 30d 1h)");
			return;
		}
		d->verify_pos_ttl = pos;
		d->verify_neg_ttl = neg;
		return;
	}
	if (nv != 1) {
		config_msg(x, 1, "%s: expected one value", kw);
		return;
	}
	if (!strcmp(kw, "verify_down")) {
		if (!strcasecmp(v[0], "accept-known"))
			d->verify_down = POLICY_VDOWN_ACCEPT_KNOWN;
		else if (!strcasecmp(v[0], "tempfail"))
			d->verify_down = POLICY_VDOWN_TEMPFAIL;
		else
			config_msg(x, 1,
			           "verify_down: expected accept-known "
			           "or tempfail, not \"%s\"",
			           v[0]);
	} else if (!strcmp(kw, "accept_when")) {
		if (!strcasecmp(v[0], "always"))
			d->accept_when = POLICY_ACCEPT_ALWAYS;
		else if (!strcasecmp(v[0], "primary-down"))
			d->accept_when = POLICY_ACCEPT_PRIMARY_DOWN;
		else
			config_msg(x, 1,
			           "accept_when: expected always or "
			           "primary-down, not \"%s\"",
			           v[0]);
	}
}

int
config_rcpt_domain(struct config_ctx *x, struct policy_domain *d, char **tok,
                   int n, int i)
{
	int j = i + 1;

	while (j < n && strcmp(tok[j], "}") != 0 && strcmp(tok[j], "{") != 0 &&
	       !config_is_domain_keyword(tok[j]))
		j++;
	if (j == i + 1)
		config_msg(x, 1, "%s: missing value", tok[i]);
	else
		rcpt_one(x, d, tok[i], tok + i + 1, j - i - 1);
	return j;
}

void
config_rcpt_domain_end(struct config_ctx *x, struct policy_domain *d)
{
	char err[600];

	for (int i = 0; i < d->nsrcs; i++) {
		if (d->srcs[i].kind != POLICY_SRC_LDAP)
			continue;
		if (ldap_src_check_file(d->srcs[i].path, NULL, err,
		                        sizeof(err)) < 0)
			config_msg(x, 1, "domain %s: %s", d->name, err);
	}
	if (d->accept_when == POLICY_ACCEPT_PRIMARY_DOWN &&
	    d->route_static == 0 && d->nsrcs == 0 &&
	    d->recipients_file == NULL && !d->recipients_any)
		return; /* the missing recipients line is reported */
}

int
config_rcpt_emptied(const struct config *old, const struct config *nc,
                    char *msg, size_t msglen)
{
	for (int i = 0; i < nc->policy->ndomains; i++) {
		const struct policy_domain *d = nc->policy->domains[i], *o;

		if (d->recipients_file == NULL || d->rcpt_async ||
		    policy_domain_nrcpts(d) > 0)
			continue; /* ldap:/callout still answer */
		o = policy_find_domain(old->policy, d->name);
		if (o == NULL || policy_domain_nrcpts(o) == 0)
			continue;
		snprintf(msg, msglen,
		         "domain %s: its recipients file(s) (%s) now list "
		         "nobody, %zu entries before: a file cut short? "
		         "keeping the running configuration (backmxctl "
		         "reload --force to take it)",
		         d->name, d->recipients_file, policy_domain_nrcpts(o));
		return 1;
	}
	return 0;
}

int
config_rcpt_global(struct config_ctx *x, struct config *c, const char *kw,
                   char **v, int nv)
{
	char *end;
	long n;

	if (!strcmp(kw, "callout_timeout")) {
		if (nv != 1 || (n = config_parse_duration(v[0])) < 1 ||
		    n > 30) {
			config_msg(x, 1,
			           "callout_timeout: a duration from 1s "
			           "to 30s (a client never waits longer)");
			return 1;
		}
		c->callout_timeout = n;
		return 1;
	}
	if (strcmp(kw, "callout_limit") && strcmp(kw, "callout_rate") &&
	    strcmp(kw, "verify_cache_max"))
		return 0;
	n = nv == 1 ? strtol(v[0], &end, 10) : -1;
	if (nv != 1 || *end != '\0' || n < 1 || n > 100000000) {
		config_msg(x, 1, "%s: expected a positive number", kw);
		return 1;
	}
	if (!strcmp(kw, "callout_limit"))
		c->callout_limit = (int)(n > 1000 ? 1000 : n);
	else if (!strcmp(kw, "callout_rate"))
		c->callout_rate = (int)(n > 100000 ? 100000 : n);
	else
		c->verify_cache_max = n;
	return 1;
}
