/*
 * rcpt_gate.c - the RCPT decision, the open-relay gate: is the
 * forward-path one we accept mail for?  <Postmaster>, address literals
 * and source routes refused, the percent hack (user%target@us, only for
 * a target with percent_hack on and a static route), routing characters
 * in the local part refused, the domain and its recipient list looked up
 * (domains.c), an undecided recipient handed to the recipient sources
 * (recipients.c, policy_rcpt_async).
 *
 * Called by relay/smtpd_cmd.c (RCPT TO) and relay/rcpt_verify.c; the path
 * syntax is address.c's.  Pure: no I/O.
 */
#include <stdio.h>
#include <string.h>

#include "address.h"
#include "policy.h"

/* gate_deny - 550 5.7.1 relaying denied, why in parentheses; -1 */
static int
gate_deny(struct result *res, const char *addr, const char *why)
{
	result_set(res, 550, "5.7.1", "<%s>: relaying denied (%s)", addr, why);
	return -1;
}

/* gate_percent_hack - user%target@us: RFC-less convention, gated by the
 * target's percent_hack on and static route (digest section 5) */
static int
gate_percent_hack(const struct policy *p, struct policy_rcpt *out,
                  struct result *res)
{
	const struct policy_path *path = &out->path;
	const struct policy_domain *d;
	const char *pct = strchr(path->local, '%'), *target;
	char user[POLICY_LOCAL_MAX + 1];
	size_t ulen;
	int listed;

	if (strchr(pct + 1, '%') != NULL)
		return gate_deny(res, path->address, "more than one %");
	if (strchr(path->local, '!') != NULL)
		return gate_deny(res, path->address, "% with !");
	ulen = pct - path->local;
	target = pct + 1;
	if (ulen == 0 || ulen >= sizeof(user) ||
	    !addr_dot_string(path->local, ulen, path->utf8))
		return gate_deny(res, path->address, "bad percent-hack user");
	if (!addr_domain_syntax(target, strlen(target), 0))
		return gate_deny(res, path->address, "bad percent-hack domain");
	memcpy(user, path->local, ulen);
	user[ulen] = '\0';
	d = policy_find_domain(p, target);
	if (d == NULL)
		return gate_deny(res, path->address,
		                 "percent-hack domain is not ours");
	if (!d->percent_hack || !d->route_static)
		return gate_deny(res, path->address,
		                 "percent hack not enabled for that domain");
	listed = policy_domain_has_rcpt(d, user);
	if (!listed && !policy_rcpt_async(d, 0)) {
		result_set(res, 550, "5.1.1", "<%s@%s>: recipient unknown",
		           user, d->name);
		return -1;
	}
	if (addr_join(out->address, sizeof(out->address), user, "@", d->name) <
	        0 ||
	    addr_join(out->orcpt, sizeof(out->orcpt), "rfc822;", path->local,
	              "@") < 0 ||
	    addr_join(out->orcpt + strlen(out->orcpt),
	              sizeof(out->orcpt) - strlen(out->orcpt), path->domain, "",
	              "") < 0) {
		result_set(res, 501, "5.1.3", "Bad address syntax: too long");
		return -1;
	}
	out->domain = d;
	out->percent_hack = 1;
	out->listed = listed;
	result_set(res, 250, "2.1.5", "<%s> recipient ok", out->address);
	return policy_rcpt_async(d, listed) ? 1 : 0;
}

int
policy_check_rcpt(const struct policy *p, const char *s, size_t len, int flags,
                  struct policy_rcpt *out, size_t *endp, struct result *res)
{
	struct policy_path *path = &out->path;
	const struct policy_domain *d;
	int own;

	memset(out, 0, sizeof(*out));
	if (p == NULL) {
		result_set(res, 451, "4.3.5", "No configuration loaded");
		return -1;
	}
	if (policy_parse_path(s, len, flags | POLICY_PARSE_RCPT, path, endp,
	                      res) < 0)
		return -1;
	if (path->kind == POLICY_PATH_POSTMASTER) {
		/* <Postmaster> (4.5.1): we have no mailbox of our own, so it
		 * goes to the postmaster of our hostname's domain block, or
		 * else of the first domain block */
		d = policy_find_domain(p, p->hostname);
		if (d == NULL && p->ndomains > 0)
			d = p->domains[0];
		if (d == NULL) {
			result_set(res, 550, "5.1.1",
			           "<Postmaster>: no domain to deliver to");
			return -1;
		}
		out->domain = d;
		if (addr_join(out->address, sizeof(out->address), "postmaster@",
		              d->name, "") < 0) {
			result_set(res, 550, "5.1.1",
			           "<Postmaster>: domain name too long");
			return -1;
		}
		result_set(res, 250, "2.1.5", "<%s> recipient ok",
		           out->address);
		return 0;
	}
	if (path->kind != POLICY_PATH_MAILBOX) {
		result_set(res, 501, "5.1.3", "Bad address syntax");
		return -1;
	}
	/* literals are never ours to relay for, not even postmaster: we do
	 * not know every address we are reached on */
	if (path->literal)
		return gate_deny(res, path->address, "address literal");
	/* RFC 5321 3.6.2 allows refusing source routes with 550, and the
	 * contract refuses them all: none is needed to reach a backup MX */
	if (path->source_route)
		return gate_deny(res, path->address, "source route");
	own = policy_is_own_name(p, path->domain_lc);
	if (own && !path->quoted && strchr(path->local, '%') != NULL)
		return gate_percent_hack(p, out, res);
	d = policy_find_domain(p, path->domain_lc);
	if (d == NULL)
		return gate_deny(res, path->address,
		                 own ? "our host name is not a mail domain"
		                     : "domain is not ours");
	/* @ % ! in a local part (quoted or not) are routing operators the
	 * primary might act on: refuse them (Postfix "routed address") */
	if (strpbrk(path->local, "@%!") != NULL)
		return gate_deny(res, path->address,
		                 "routing characters in local part");
	out->listed = policy_domain_has_rcpt(d, path->local);
	if (!out->listed && !policy_rcpt_async(d, 0)) {
		result_set(res, 550, "5.1.1", "<%s>: recipient unknown",
		           path->address);
		return -1;
	}
	out->domain = d;
	snprintf(out->address, sizeof(out->address), "%s", path->address);
	result_set(res, 250, "2.1.5", "<%s> recipient ok", out->address);
	return policy_rcpt_async(d, out->listed) ? 1 : 0;
}
