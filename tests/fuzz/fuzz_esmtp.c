/*
 * fuzz_esmtp.c - libFuzzer target for policy/esmtp.c: the MAIL and RCPT
 * parameter parsers and the xtext decoder on arbitrary bytes.  The first
 * byte picks MAIL or RCPT; the rest is the parameter text (NUL-ended,
 * as the session hands it over).  Checks: a refusal carries a 5xx reply;
 * what is accepted holds up (ENVID/ORCPT within their limits and valid
 * xtext, NOTIFY=NEVER alone); xtext decoding never writes past out and
 * decodes what it accepts to no more octets than it read; encoding
 * always gives valid xtext within its buffer, and decodes back.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "esmtp.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct result res;
	char *buf, out[128];
	int rc, n;

	if (size < 1 || size > 4096)
		return 0;
	if ((buf = malloc(size)) == NULL)
		return 0;
	memcpy(buf, data + 1, size - 1);
	buf[size - 1] = '\0';
	memset(&res, 0, sizeof(res));
	if (data[0] & 1) {
		struct esmtp_rcpt r;

		rc = esmtp_rcpt_params(buf, &r, &res);
		if (rc == 0) {
			assert(r.orcpt == NULL ||
			       (strlen(r.orcpt) <= ESMTP_ORCPT_MAX &&
			        strchr(r.orcpt, ';') != NULL));
			assert(!(r.notify & ESMTP_NOTIFY_NEVER) ||
			       r.notify == ESMTP_NOTIFY_NEVER);
		}
	} else {
		struct esmtp_mail m;

		rc = esmtp_mail_params(buf, &m, &res);
		if (rc == 0 && m.envid != NULL)
			assert(strlen(m.envid) <= ESMTP_ENVID_MAX &&
			       policy_xtext_valid(m.envid, strlen(m.envid)));
	}
	if (rc != 0)
		assert(res.code >= 500 && res.code < 600 &&
		       res.text[0] != '\0');

	/* the same bytes as xtext, into a small buffer */
	n = esmtp_xtext_decode((const char *)data + 1, size - 1, out,
	                       (size_t)(data[0] >> 1) % sizeof(out));
	assert(n < 0 || (size_t)n <= size - 1);
	assert(n < 0 || (size_t)n < (size_t)(data[0] >> 1) % sizeof(out));

	/* encoding: always valid xtext, within out; what was not xtext
	 * decodes back to the input */
	{
		char enc[256], dec[256];
		size_t in_len = strnlen((const char *)data + 1, size - 1);
		char *in = strndup((const char *)data + 1, in_len);

		if (in != NULL) {
			int was = policy_xtext_valid(in, in_len);

			n = esmtp_xtext_encode(in, enc, sizeof(enc));
			assert(strlen(enc) < sizeof(enc));
			assert(policy_xtext_valid(enc, strlen(enc)));
			if (n >= 0 && !was) {
				assert((size_t)n == strlen(enc));
				assert(esmtp_xtext_decode(enc, n, dec,
				                          sizeof(dec)) ==
				       (int)in_len);
				assert(memcmp(dec, in, in_len) == 0);
			}
			free(in);
		}
	}
	free(buf);
	return 0;
}
