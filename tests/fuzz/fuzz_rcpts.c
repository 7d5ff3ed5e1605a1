/*
 * fuzz_rcpts.c - libFuzzer target for recipient list files
 * (policy_domain_load_recipients in policy/domains.c) and the LDAP
 * filter built from a recipient (policy_ldap_escape/policy_ldap_filter in
 * policy/recipients.c).  The input is written as the domain's list file
 * (on /dev/shm when there is one) and loaded.  Invariants: a load either
 * succeeds or names the file and a line; postmaster is always a
 * recipient; a failed reload keeps the set the last good load made; a
 * file's simple entries (a lowercase letters-only line) are found after
 * a good load; the same file loads to the same answers twice; an LDAP
 * filter never carries an unescaped metacharacter of the address.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy.h"

static char fuzz_path[64];
static struct policy *fuzz_p;
static struct policy_domain *fuzz_d;

static void
fuzz_cleanup(void)
{
	if (fuzz_path[0] != '\0')
		unlink(fuzz_path);
}

static void
fuzz_setup(void)
{
	const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";

	snprintf(fuzz_path, sizeof(fuzz_path), "%s/fuzz-rcpts-%d", dir,
	         (int)getpid());
	atexit(fuzz_cleanup);
	fuzz_p = policy_new("mx2.example.net");
	fuzz_d = policy_add_domain(fuzz_p, "example.org");
	if (fuzz_p == NULL || fuzz_d == NULL)
		abort();
	fuzz_d->recipients_file = strdup(fuzz_path);
}

static void
fuzz_write(const uint8_t *data, size_t len)
{
	FILE *f = fopen(fuzz_path, "w");

	if (f == NULL || (len > 0 && fwrite(data, 1, len, f) != len) ||
	    fclose(f) != 0)
		abort();
}

/* fuzz_simple - the line at p (n octets) is one lowercase word */
static int
fuzz_simple(const uint8_t *p, size_t n)
{
	if (n == 0 || n > 60)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (p[i] < 'a' || p[i] > 'z')
			return 0;
	return 1;
}

static void
fuzz_filter(const uint8_t *data, size_t len)
{
	char addr[300], out[2048];
	size_t n = len < sizeof(addr) - 1 ? len : sizeof(addr) - 1;

	memcpy(addr, data, n);
	addr[n] = '\0';
	if (policy_ldap_escape(addr, strlen(addr), out, sizeof(out)) >= 0) {
		for (const char *q = out; *q; q++)
			if (*q == '(' || *q == ')' || *q == '*')
				abort(); /* escaped as \28 \29 \2a */
	}
	(void)policy_ldap_filter("(&(mail=%s)(uid=%u)(dc=%d))", addr, out,
	                         sizeof(out));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	char err[512];
	static int have_good;
	int rc, rc2;

	if (fuzz_d == NULL)
		fuzz_setup();
	fuzz_write(data, len);
	/* the answer for "alice" before: a failed load must keep it */
	int before = policy_domain_has_rcpt(fuzz_d, "alice");

	rc = policy_domain_load_recipients(fuzz_d, err, sizeof(err));
	if (rc < 0) {
		if (strncmp(err, fuzz_path, strlen(fuzz_path)) != 0 ||
		    err[strlen(fuzz_path)] != ':')
			abort(); /* the error names the file and line */
		if (have_good &&
		    policy_domain_has_rcpt(fuzz_d, "alice") != before)
			abort(); /* a bad reload changed the set */
	} else {
		have_good = 1;
		for (size_t i = 0; i < len;) {
			const uint8_t *nl = memchr(data + i, '\n', len - i);
			size_t n = (nl ? (size_t)(nl - data) : len) - i;

			if (fuzz_simple(data + i, n)) {
				char w[64];

				memcpy(w, data + i, n);
				w[n] = '\0';
				if (!policy_domain_has_rcpt(fuzz_d, w))
					abort(); /* listed, not found */
			}
			i += n + 1;
		}
		int a = policy_domain_has_rcpt(fuzz_d, "alice");
		int x = policy_domain_has_rcpt(fuzz_d, "\"Bob\"");

		rc2 = policy_domain_load_recipients(fuzz_d, err, sizeof(err));
		if (rc2 != 0 || a != policy_domain_has_rcpt(fuzz_d, "alice") ||
		    x != policy_domain_has_rcpt(fuzz_d, "\"Bob\""))
			abort(); /* not the same answers twice */
	}
	if (!policy_domain_has_rcpt(fuzz_d, "postmaster") ||
	    !policy_domain_has_rcpt(fuzz_d, "PostMaster"))
		abort();
	fuzz_filter(data, len);
	return 0;
}
