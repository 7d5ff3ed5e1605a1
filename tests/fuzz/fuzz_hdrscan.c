/*
 * fuzz_hdrscan.c - libFuzzer target for the streaming header scanner in
 * policy/loop.c.  The first four octets seed the split points; the rest is
 * the message.  Feeding it in random pieces must give exactly the counts
 * of feeding it whole, and never touch memory it should not.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct policy_hdrscan whole, parts;
	struct result r1, r2;
	const char *msg;
	uint32_t seed;
	size_t len, at, n;
	int rc1, rc2;

	if (size < 4)
		return 0;
	memcpy(&seed, data, 4);
	msg = (const char *)data + 4;
	len = size - 4;

	policy_hdrscan_init(&whole, "mx2.example.net");
	policy_hdrscan_feed(&whole, msg, len);
	rc1 = policy_hdrscan_check(&whole, 3, &r1);

	policy_hdrscan_init(&parts, "mx2.example.net");
	for (at = 0; at < len; at += n) {
		seed = seed * 1103515245u + 12345u;
		n = 1 + (seed >> 16) % 64;
		if (n > len - at)
			n = len - at;
		policy_hdrscan_feed(&parts, msg + at, n);
		/* an empty feed is harmless */
		policy_hdrscan_feed(&parts, msg + at, 0);
	}
	rc2 = policy_hdrscan_check(&parts, 3, &r2);

	if (whole.received != parts.received ||
	    whole.received_by_us != parts.received_by_us || rc1 != rc2 ||
	    r1.code != r2.code || whole.received_by_us > whole.received ||
	    whole.flen > sizeof(whole.field))
		abort();
	if (rc1 != 0 && (r1.code != 554 || strcmp(r1.enh, "5.4.6") != 0))
		abort();
	return 0;
}
