/*
 * fuzz_mtasts.c - libFuzzer target for relay/mtasts.c's parsers.  The
 * first octet picks the parser: 0 the _mta-sts TXT record, 1 the policy
 * file, 2 the HTTP response (whose body then goes to the policy parser).
 * Accepted policies must print back to a body that parses to the same
 * policy, and every pattern must match a host made from it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mtasts.h"

static char body[MTASTS_BODY_MAX];

/* fuzz_policy_check - invariants of an accepted policy */
static void
fuzz_policy_check(const struct mtasts_policy *p)
{
	static char out[MTASTS_MAX_MX * 300 + 100];
	struct mtasts_policy q;
	char err[256], host[300];
	size_t n;

	if (p->nmx < 0 || p->nmx > MTASTS_MAX_MX || p->max_age < 0 ||
	    p->max_age > MTASTS_MAX_AGE)
		abort();
	n = snprintf(out, sizeof(out),
	             "version: STSv1\nmode: %s\n"
	             "max_age: %ld\n",
	             mtasts_mode_str(p->mode), p->max_age);
	for (int i = 0; i < p->nmx; i++) {
		const char *pat = p->mx[i];

		if (strlen(pat) > MTASTS_NAME_MAX + 2)
			abort();
		n += snprintf(out + n, sizeof(out) - n, "mx: %s\r\n", pat);
		if (pat[0] == '*') {
			snprintf(host, sizeof(host), "a%s", pat + 1);
			/* "a." + a 253-octet suffix is too long a name */
			if (strlen(host) <= MTASTS_NAME_MAX &&
			    !mtasts_mx_match(p, host))
				abort();
		} else if (!mtasts_mx_match(p, pat))
			abort();
	}
	if (mtasts_parse_policy(out, n, &q, err, sizeof(err)) != 0)
		abort();
	if (q.mode != p->mode || q.max_age != p->max_age || q.nmx != p->nmx)
		abort();
	for (int i = 0; i < p->nmx; i++)
		if (strcmp(q.mx[i], p->mx[i]) != 0)
			abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mtasts_policy p;
	char err[256], id[MTASTS_ID_MAX + 1];
	size_t blen, blen2;
	const char *in;
	int rc, rc2;

	if (size < 1)
		return 0;
	in = (const char *)data + 1;
	size--;
	switch (data[0] % 3) {
	case 0: {
		char *txt = malloc(size + 1);

		memcpy(txt, in, size);
		txt[size] = '\0';
		if (mtasts_parse_txt(txt, id, sizeof(id)) == 0) {
			size_t n = strlen(id);

			if (n == 0 || n > MTASTS_ID_MAX ||
			    strncmp(txt, "v=STSv1", 7) != 0)
				abort();
		} else if (id[0] != '\0')
			abort();
		free(txt);
		break;
	}
	case 1:
		if (mtasts_parse_policy(in, size, &p, err, sizeof(err)) == 0)
			fuzz_policy_check(&p);
		else if (err[0] == '\0')
			abort();
		break;
	case 2:
		rc = mtasts_http_response(in, size, 0, body, sizeof(body),
		                          &blen, err, sizeof(err));
		rc2 = mtasts_http_response(in, size, 1, body, sizeof(body),
		                           &blen2, err, sizeof(err));
		/* complete without eof stays complete, with the same body */
		if (rc == 1 && (rc2 != 1 || blen2 != blen))
			abort();
		if (rc == -1 && rc2 != -1)
			abort();
		if (rc2 == 0)
			abort(); /* eof always decides */
		if (rc2 == 1) {
			if (blen2 > MTASTS_BODY_MAX)
				abort();
			if (mtasts_parse_policy(body, blen2, &p, err,
			                        sizeof(err)) == 0)
				fuzz_policy_check(&p);
		}
		break;
	}
	return 0;
}
