/*
 * fuzz_address.c - libFuzzer target for policy/address.c and
 * policy/rcpt_gate.c.  The first octet picks the parse flags, the rest
 * is the text after "RCPT TO:" / "MAIL FROM:".  Beyond memory safety it
 * checks the open-relay rule: an accepted recipient is always local@D
 * for a configured domain D, with no routing characters left in the
 * local part.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy.h"

static struct policy *pol;

static void
fuzz_setup(void)
{
	static const char *rcpts = "alice\nBob\n\"john doe\"\nuser\n";
	char path[] = "/tmp/backmx-fuzz-rcpts-XXXXXX", err[512];
	struct policy_domain *d;
	int fd;

	if ((fd = mkstemp(path)) < 0 ||
	    write(fd, rcpts, strlen(rcpts)) != (ssize_t)strlen(rcpts))
		abort();
	close(fd);
	pol = policy_new("mx2.example.net");
	policy_add_alias(pol, "mx.provider.net");
	d = policy_add_domain(pol, "example.org");
	d->recipients_file = strdup(path);
	if (policy_domain_load_recipients(d, err, sizeof(err)) < 0)
		abort();
	d = policy_add_domain(pol, "customer.example");
	d->recipients_file = strdup(path);
	d->percent_hack = 1;
	d->route_static = 1;
	if (policy_domain_load_recipients(d, err, sizeof(err)) < 0)
		abort();
	d = policy_add_domain(pol, "mxroute.example");
	d->percent_hack = 1;
	d->recipients_any = 1;
	d = policy_add_domain(pol, "any.example");
	d->recipients_any = 1;
	unlink(path);
}

static void
fuzz_check_result(const struct result *res, int rc)
{
	if (memchr(res->enh, '\0', sizeof(res->enh)) == NULL ||
	    memchr(res->text, '\0', sizeof(res->text)) == NULL)
		abort();
	if (rc == 0 && res->code / 100 != 2)
		abort();
	if (rc != 0 && res->code / 100 != 4 && res->code / 100 != 5)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct policy_path path;
	struct policy_rcpt r;
	struct result res;
	const char *s, *at;
	size_t len, end;
	int flags, rc;

	if (pol == NULL)
		fuzz_setup();
	if (size == 0)
		return 0;
	flags = data[0] & POLICY_PARSE_SMTPUTF8;
	s = (const char *)data + 1;
	len = size - 1;

	end = 0;
	rc = policy_parse_path(s, len, flags, &path, &end, &res);
	fuzz_check_result(&res, rc);
	if (rc == 0 && (end < 2 || end > len || s[end - 1] != '>' ||
	                strlen(path.address) >= sizeof(path.address)))
		abort();

	end = 0;
	rc = policy_check_rcpt(pol, s, len, flags, &r, &end, &res);
	fuzz_check_result(&res, rc);
	if (rc == 0) {
		if (end < 2 || end > len || s[end - 1] != '>')
			abort();
		if (r.domain == NULL ||
		    policy_find_domain(pol, r.domain->name) != r.domain)
			abort();
		/* the open-relay rule */
		if ((at = strrchr(r.address, '@')) == NULL ||
		    strcmp(at + 1, r.domain->name) != 0)
			abort();
		if (strpbrk(r.address, "%!") != NULL ||
		    memchr(r.address, '@', at - r.address) != NULL)
			abort();
		if (r.percent_hack &&
		    (!r.domain->percent_hack || !r.domain->route_static ||
		     strncmp(r.orcpt, "rfc822;", 7) != 0))
			abort();
		if (r.path.literal)
			abort();
	}
	policy_xtext_valid(s, len);
	return 0;
}
