/*
 * recipients.c - combining a domain's recipient sources (files, "*",
 * ldap:FILE, callout) into one RCPT verdict, the verify_down and
 * accept_when decisions, and RFC 4515 escaping for LDAP filters.
 *
 * Pure: relay/rcpt_verify.c asks the sources (LDAP, the primary, the
 * cache in spool/verify.c) and hands their answers here; relay/config_rcpt.c
 * fills the source list; tests/unit/test_recipients.c drives the tables.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

int
policy_domain_add_src(struct policy_domain *d, enum policy_src_kind kind,
                      const char *path)
{
	struct policy_src *ns;
	char *copy = NULL;

	if (path != NULL && (copy = strdup(path)) == NULL)
		return -1;
	ns = realloc(d->srcs, (d->nsrcs + 1) * sizeof(*ns));
	if (ns == NULL) {
		free(copy);
		return -1;
	}
	d->srcs = ns;
	d->srcs[d->nsrcs].kind = kind;
	d->srcs[d->nsrcs].path = copy;
	d->nsrcs++;
	if (kind == POLICY_SRC_LDAP || kind == POLICY_SRC_CALLOUT)
		d->rcpt_async = 1;
	return 0;
}

int
policy_domain_has_src(const struct policy_domain *d, enum policy_src_kind kind)
{
	for (int i = 0; d != NULL && i < d->nsrcs; i++)
		if (d->srcs[i].kind == kind)
			return 1;
	return 0;
}

int
policy_rcpt_async(const struct policy_domain *d, int listed)
{
	if (d == NULL)
		return 0;
	/* the primary's health decides even for listed recipients */
	if (d->accept_when == POLICY_ACCEPT_PRIMARY_DOWN)
		return 1;
	return !listed && d->rcpt_async;
}

int
policy_rcpt_decide(const struct policy_domain *d, const char *address,
                   const struct policy_rcpt_answers *a, struct result *res)
{
	if (a->yes) {
		result_set(res, 250, "2.1.5", "<%s> recipient ok", address);
		return 0;
	}
	if (!a->unknown) {
		/* every source said no: the only case for a 5xx */
		if (a->no_text != NULL && a->no_text[0] != '\0')
			result_set(res, 550, "5.1.1",
			           "<%s>: recipient unknown (primary said: "
			           "%.150s)",
			           address, a->no_text);
		else
			result_set(res, 550, "5.1.1", "<%s>: recipient unknown",
			           address);
		return -1;
	}
	if (d != NULL && d->verify_down == POLICY_VDOWN_ACCEPT_KNOWN &&
	    a->stale_yes) {
		result_set(res, 250, "2.1.5",
		           "<%s> recipient ok (verified earlier)", address);
		return 0;
	}
	result_set(res, 450, "4.4.3",
	           "<%s>: recipient cannot be verified now (primary or "
	           "directory unreachable), try again later",
	           address);
	return -1;
}

int
policy_accept_when_check(const struct policy_domain *d, const char *address,
                         int primary_up, struct result *res)
{
	if (d == NULL || d->accept_when != POLICY_ACCEPT_PRIMARY_DOWN ||
	    !primary_up)
		return 0;
	result_set(res, 451, "4.7.1",
	           "<%s>: the primary MX of %s is up, deliver there; this "
	           "backup takes mail only while it is down",
	           address, d->name);
	return -1;
}

/* ------------------------------------------------------------------ */
/* RFC 4515 */

int
policy_ldap_escape(const char *in, size_t inlen, char *out, size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (size_t i = 0; i < inlen; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c == '*' || c == '(' || c == ')' || c == '\\' || c < 0x20 ||
		    c >= 0x7f) {
			if (o + 3 >= outlen)
				return -1;
			out[o++] = '\\';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		} else {
			if (o + 1 >= outlen)
				return -1;
			out[o++] = (char)c;
		}
	}
	if (o >= outlen)
		return -1;
	out[o] = '\0';
	return (int)o;
}

int
policy_ldap_filter(const char *tmpl, const char *address, char *out,
                   size_t outlen)
{
	const char *at = strrchr(address, '@');
	size_t o = 0, alen = strlen(address);
	int n;

	for (const char *t = tmpl; *t != '\0'; t++) {
		const char *v;
		size_t vlen;

		if (*t != '%') {
			if (o + 1 >= outlen)
				return -1;
			out[o++] = *t;
			continue;
		}
		t++;
		switch (*t) {
		case 's':
			v = address, vlen = alen;
			break;
		case 'u':
			v = address, vlen = at ? (size_t)(at - address) : alen;
			break;
		case 'd':
			v = at ? at + 1 : "", vlen = strlen(v);
			break;
		case '%':
			if (o + 1 >= outlen)
				return -1;
			out[o++] = '%';
			continue;
		default:
			return -1;
		}
		n = policy_ldap_escape(v, vlen, out + o, outlen - o);
		if (n < 0)
			return -1;
		o += (size_t)n;
	}
	if (o >= outlen)
		return -1;
	out[o] = '\0';
	return (int)o;
}
