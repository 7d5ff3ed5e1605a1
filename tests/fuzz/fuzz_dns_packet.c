/*
 * fuzz_dns_packet.c - libFuzzer target for relay/dns_packet.c: the first
 * octet picks the query type (A, AAAA, MX, TXT, TLSA, CNAME), the rest is
 * a DNS reply as ub_resolve_event() would hand it over.  Every record
 * given back must be inside its own allocation (ASan checks), MX records
 * must carry an uncompressed name, and the result must free cleanly.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unbound.h>

#include "dns.h"
#include "dns_packet.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int types[] = {DNS_T_A,   DNS_T_AAAA, DNS_T_MX,
	                            DNS_T_TXT, DNS_T_TLSA, DNS_T_CNAME};
	struct ub_result *r;
	int qtype, i;

	if (size < 1)
		return 0;
	qtype = types[data[0] % 6];
	r = dns_packet_result(data + 1, size - 1, "fuzz.example", qtype, 0,
	                      data[0] >> 6, NULL);
	if (r == NULL)
		return 0;
	if (r->data == NULL || r->len == NULL)
		abort();
	for (i = 0; r->data[i] != NULL; i++) {
		volatile uint8_t sum = 0;
		int k;

		if (r->len[i] < 0)
			abort();
		for (k = 0; k < r->len[i]; k++)
			sum ^= (uint8_t)r->data[i][k];
		if (qtype == DNS_T_MX) {
			struct policy_mx mx;

			(void)dns_parse_mx_rdata((uint8_t *)r->data[i],
			                         (size_t)r->len[i], &mx);
		}
	}
	if (r->havedata != (i > 0))
		abort();
	dns_packet_result_free(r);
	return 0;
}
