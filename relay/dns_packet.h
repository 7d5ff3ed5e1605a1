/*
 * dns_packet.h - a DNS reply in wire format (as libunbound's
 * ub_resolve_event() hands it over) turned into the struct ub_result that
 * ub_resolve() would have given: the answer records of the query type at
 * the end of the CNAME chain, names inside MX rdata decompressed.
 * Bounded: never reads past len, follows at most 16 CNAMEs and 64
 * compression pointers a name.
 */
#ifndef BACKMX_DNS_PACKET_H
#define BACKMX_DNS_PACKET_H

#include <stddef.h>
#include <stdint.h>

struct ub_result;

/*
 * dns_packet_result - pkt may be NULL (rcode alone); sec: 0 insecure,
 * 1 bogus, 2 secure; rcode: libunbound's (non-zero: its own failure, pkt
 * not read; zero: pkt is the reply and its header's rcode counts).
 * A malformed packet gives rcode 2 (SERVFAIL) and no
 * data.  NULL only when out of memory.
 */
struct ub_result *dns_packet_result(const uint8_t *pkt, size_t len,
                                    const char *qname, int qtype, int rcode,
                                    int sec, const char *why_bogus);
void dns_packet_result_free(struct ub_result *r);

#endif
