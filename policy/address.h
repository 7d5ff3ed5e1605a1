/*
 * address.h - the path-syntax helpers address.c shares with
 * rcpt_gate.c; everyone outside policy/ uses policy.h.
 */
#ifndef BACKMX_POLICY_ADDRESS_H
#define BACKMX_POLICY_ADDRESS_H

#include <stddef.h>

/* addr_dot_string - Dot-string of atext atoms; utf8 admits octets >= 0x80 */
int addr_dot_string(const char *s, size_t n, int utf8);
/* addr_domain_syntax - a domain name (LDH labels <= 63; utf8: U-labels) */
int addr_domain_syntax(const char *s, size_t n, int utf8);
/* addr_join - dst = a b c; -1 (dst empty) if it does not fit */
int addr_join(char *dst, size_t dstlen, const char *a, const char *b,
              const char *c);

#endif
