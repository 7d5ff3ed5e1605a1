/*
 * fuzz_proxy.c - libFuzzer target for the PROXY v1/v2 header parser.
 * Invariants: a result is -1 (with a reason), 0, or a length within the
 * input and within the protocol limits; every prefix of an accepted
 * header asks for more; a carried address is IPv4 or IPv6.
 */
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "proxy.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct proxy_hdr h;
	const char *why;
	int r = proxy_parse(data, len, &h, &why);

	if (r < 0) {
		if (why == NULL)
			abort();
		return 0;
	}
	if (r == 0)
		return 0;
	if ((size_t)r > len || r > PROXY_HDR_MAX || (size_t)r != h.len)
		abort();
	if (h.version == 1 && r > PROXY_V1_MAX)
		abort();
	if (!h.local && h.src.ss_family != AF_INET &&
	    h.src.ss_family != AF_INET6)
		abort();
	for (int i = 0; i < r; i++) {
		struct proxy_hdr h2;

		if (proxy_parse(data, i, &h2, &why) != 0)
			abort();
	}
	return 0;
}
