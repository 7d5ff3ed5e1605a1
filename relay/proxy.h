/*
 * proxy.h - the PROXY protocol (HAProxy, versions 1 and 2) on a
 * `listen ADDR proxy` socket.
 *
 * listen.c hands each connection accepted on such a socket to
 * proxy_accept(): a peer outside proxy_allow is dropped (no reply, one
 * log line); otherwise the header is read, strictly bounded, before any
 * banner, and the session starts with the address the header carries
 * (smtpd_session_new), or the peer's own for a LOCAL header.
 *
 * proxy_parse() is the pure parser (proxy_parse.c), shared with the unit
 * test and the fuzz target.
 */
#ifndef BACKMX_PROXY_H
#define BACKMX_PROXY_H

#include <stddef.h>
#include <sys/socket.h>

#define PROXY_V1_MAX 107 /* "PROXY TCP6 ...\r\n", the spec's maximum */
#define PROXY_V2_HDR 16  /* signature, ver/cmd, family, length */
#define PROXY_V2_MAX 536 /* whole v2 header we take (TLVs included) */
#define PROXY_HDR_MAX PROXY_V2_MAX

struct proxy_hdr {
	int version; /* 1 or 2 */
	int local;   /* LOCAL (v2) or UNKNOWN (v1): keep the peer */
	struct sockaddr_storage src, dst; /* when !local, port included */
	socklen_t srclen;
	size_t len; /* octets of the header */
};

/*
 * proxy_parse - look at the first len octets a proxy sent.  Returns the
 * header length (> 0) with h filled, 0 when the octets are a valid
 * beginning and more are needed, -1 when they can never be a valid
 * header (*why says why).  Never reads past len; len may exceed the
 * header (the rest is the client's).
 */
int proxy_parse(const unsigned char *buf, size_t len, struct proxy_hdr *h,
                const char **why);

/* proxy_accept - take over fd accepted on a proxy listener */
void proxy_accept(int fd, const struct sockaddr *sa, socklen_t salen);
void proxy_shutdown(void); /* drop connections still in the header */

#endif
