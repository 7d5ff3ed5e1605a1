/*
 * backmxctl_dns.h - `backmxctl check-dns DOMAIN` without a daemon: the
 * audit of checkdns.h run inside backmxctl, with cfg's resolver
 * (`dns`, `dns_trust_anchor`; /etc/resolv.conf without `dns`), cfg's
 * hostname, aliases, domains and tls_ca, and as this machine's addresses
 * the configured listen addresses (all of the interfaces' when one is a
 * wildcard), as backmxd would.  The output is the daemon's: text lines
 * "LEVEL CHECK: TEXT" or, json set, one {"status", "check", "message"}
 * object a line, on out; the failure count on err.  Returns the exit
 * status: 0, or 1 when a check FAILed or the audit could not run.
 * Uses backmxd.loop/own_addrs (set here): for backmxctl only.
 */
#ifndef BACKMX_BACKMXCTL_DNS_H
#define BACKMX_BACKMXCTL_DNS_H

#include <stdio.h>

struct config;

int checkdns_local(const struct config *cfg, const char *domain, int json,
                   FILE *out, FILE *err);

#endif
