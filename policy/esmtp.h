/*
 * esmtp.h - the ESMTP parameters of MAIL FROM and RCPT TO (RFC 1870
 * SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8, RFC 3461 RET ENVID NOTIFY
 * ORCPT) and xtext.  Pure: no I/O, no allocation; the parsers split the
 * parameter text in place and point into it.  relay/smtpd_cmd.c calls them;
 * the unit test and the fuzz target drive them with any bytes.
 */
#ifndef BACKMX_ESMTP_H
#define BACKMX_ESMTP_H

#include <stddef.h>

#include "policy.h"

#define ESMTP_MAIL_PARAMS_MAX 16
#define ESMTP_RCPT_PARAMS_MAX 8
#define ESMTP_ENVID_MAX 100 /* RFC 3461 4.4 */
#define ESMTP_ORCPT_MAX 500 /* 4.2 */

/* the values of the envelope's fields (spool.h SPOOL_BODY_* etc.) */
#define ESMTP_BODY_7BIT 0
#define ESMTP_BODY_8BITMIME 1
#define ESMTP_RET_NONE 0
#define ESMTP_RET_FULL 1
#define ESMTP_RET_HDRS 2
#define ESMTP_NOTIFY_NEVER 0x01
#define ESMTP_NOTIFY_SUCCESS 0x02
#define ESMTP_NOTIFY_FAILURE 0x04
#define ESMTP_NOTIFY_DELAY 0x08

struct esmtp_mail {
	unsigned long long size; /* SIZE=, 0 when not given */
	int body;                /* ESMTP_BODY_* (7BIT when not given) */
	int ret;                 /* ESMTP_RET_* */
	int smtputf8;            /* SMTPUTF8 given */
	const char *envid;       /* ENVID= as sent (xtext), or NULL */
};

struct esmtp_rcpt {
	int notify;        /* ESMTP_NOTIFY_* or 0 when not given */
	const char *orcpt; /* ORCPT= as sent ("type;xtext"), or NULL */
};

/*
 * esmtp_mail_params, esmtp_rcpt_params - parse the text after the path
 * (" KEY[=VALUE]..."; changed in place).  0, or -1 with the reply in
 * *res: 501 5.5.4 for a bad or repeated value, 555 5.5.4 for a parameter
 * we do not support.
 */
int esmtp_mail_params(char *p, struct esmtp_mail *m, struct result *res);
int esmtp_rcpt_params(char *p, struct esmtp_rcpt *r, struct result *res);

/* esmtp_notify_parse - "NEVER" or a list of SUCCESS,FAILURE,DELAY:
 * ESMTP_NOTIFY_* bits, -1 for an unknown word, an empty list or item or
 * over 63 octets, -2 for NEVER with another */
int esmtp_notify_parse(const char *v);

/* esmtp_xtext_decode - decode RFC 3461 xtext ("+XX" hex, upper case)
 * into out (NUL-terminated); its length, or -1 when in is no valid xtext
 * or out is too small */
int esmtp_xtext_decode(const char *in, size_t len, char *out, size_t outlen);

/* esmtp_xtext_encode - in as RFC 3461 xtext: octets outside "!".."~",
 * '+' and '=' as "+XX"; in that is valid xtext already is copied as it
 * is (ENVID and ORCPT are stored as received).  The length, or -1 when
 * out is too small: out then holds as much as fits, never a cut "+XX" */
int esmtp_xtext_encode(const char *in, char *out, size_t outlen);

#endif
