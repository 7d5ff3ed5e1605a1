/*
 * esmtp.c - MAIL/RCPT ESMTP parameters and xtext (see esmtp.h).
 *
 * Called by relay/smtpd_cmd.c after policy_parse_path / policy_check_rcpt
 * found the end of the path; xtext syntax comes from address.c
 * (policy_xtext_valid).  Replies are exactly the ones the session gave
 * when it parsed them itself.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "esmtp.h"

/* esmtp_split - "KEY=VALUE" parameters split in place; the count, or -1
 * when there are more than max */
static int
esmtp_split(char *p, char **keys, char **vals, int max)
{
	int n = 0;

	for (;;) {
		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		if (n == max)
			return -1;
		keys[n] = p;
		while (*p != '\0' && *p != ' ' && *p != '=')
			p++;
		if (*p == '=') {
			*p++ = '\0';
			vals[n] = p;
			while (*p != '\0' && *p != ' ')
				p++;
		} else
			vals[n] = NULL;
		if (*p == ' ')
			*p++ = '\0';
		n++;
	}
	return n;
}

/* esmtp_atom - n octets of an RFC 5322 atom (1*atext): ORCPT's addr-type
 * (RFC 3461 4.2), which the DSN repeats as is */
static int
esmtp_atom(const char *p, size_t n)
{
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = p[i];

		if (c == '\0' || c > 0x7e ||
		    (!isalnum(c) && strchr("!#$%&'*+-/=?^_`{|}~", c) == NULL))
			return 0;
	}
	return 1;
}

static int
esmtp_is(const char *a, const char *b)
{
	return strcasecmp(a, b) == 0;
}

int
esmtp_mail_params(char *p, struct esmtp_mail *m, struct result *res)
{
	char *keys[ESMTP_MAIL_PARAMS_MAX], *vals[ESMTP_MAIL_PARAMS_MAX];
	int n, i, have_size = 0, have_body = 0, have_ret = 0, have_envid = 0,
	          have_utf8 = 0;

	memset(m, 0, sizeof(*m));
	n = esmtp_split(p, keys, vals, ESMTP_MAIL_PARAMS_MAX);
	if (n < 0) {
		result_set(res, 501, "5.5.4", "Too many parameters");
		return -1;
	}
	for (i = 0; i < n; i++) {
		const char *k = keys[i], *v = vals[i];

		if (esmtp_is(k, "SIZE") && v != NULL) {
			char *e;
			unsigned long long sz;

			errno = 0;
			sz = strtoull(v, &e, 10);
			if (have_size++ || !isdigit((unsigned char)*v) ||
			    *e != '\0' || errno) {
				result_set(res, 501, "5.5.4",
				           "Bad SIZE parameter");
				return -1;
			}
			m->size = sz;
		} else if (esmtp_is(k, "BODY") && v != NULL) {
			if (have_body++) {
				result_set(res, 501, "5.5.4", "Duplicate BODY");
				return -1;
			}
			if (esmtp_is(v, "7BIT"))
				m->body = ESMTP_BODY_7BIT;
			else if (esmtp_is(v, "8BITMIME"))
				m->body = ESMTP_BODY_8BITMIME;
			else {
				result_set(res, 501, "5.5.4",
				           "Unsupported BODY type");
				return -1;
			}
		} else if (esmtp_is(k, "SMTPUTF8") && v == NULL) {
			if (have_utf8++) {
				result_set(res, 501, "5.5.4",
				           "Duplicate SMTPUTF8");
				return -1;
			}
			m->smtputf8 = 1;
		} else if (esmtp_is(k, "RET") && v != NULL) {
			if (have_ret++) {
				result_set(res, 501, "5.5.4", "Duplicate RET");
				return -1;
			}
			if (esmtp_is(v, "FULL"))
				m->ret = ESMTP_RET_FULL;
			else if (esmtp_is(v, "HDRS"))
				m->ret = ESMTP_RET_HDRS;
			else {
				result_set(res, 501, "5.5.4",
				           "Bad RET parameter");
				return -1;
			}
		} else if (esmtp_is(k, "ENVID") && v != NULL) {
			if (have_envid++ || strlen(v) > ESMTP_ENVID_MAX ||
			    !policy_xtext_valid(v, strlen(v))) {
				result_set(res, 501, "5.5.4",
				           "Bad ENVID parameter");
				return -1;
			}
			m->envid = v;
		} else {
			result_set(res, 555, "5.5.4",
			           "Unsupported option: %.64s", k);
			return -1;
		}
	}
	return 0;
}

int
esmtp_notify_parse(const char *v)
{
	char buf[64], *save = NULL, *tok;
	int notify = 0;

	/* an empty list or item is no list (the session once took
	 * "NOTIFY=" as no NOTIFY at all) */
	if (strlen(v) >= sizeof(buf) || *v == '\0' || *v == ',' ||
	    strstr(v, ",,") != NULL || v[strlen(v) - 1] == ',')
		return -1;
	strcpy(buf, v);
	for (tok = strtok_r(buf, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		if (esmtp_is(tok, "NEVER"))
			notify |= ESMTP_NOTIFY_NEVER;
		else if (esmtp_is(tok, "SUCCESS"))
			notify |= ESMTP_NOTIFY_SUCCESS;
		else if (esmtp_is(tok, "FAILURE"))
			notify |= ESMTP_NOTIFY_FAILURE;
		else if (esmtp_is(tok, "DELAY"))
			notify |= ESMTP_NOTIFY_DELAY;
		else
			return -1;
	}
	if ((notify & ESMTP_NOTIFY_NEVER) && notify != ESMTP_NOTIFY_NEVER)
		return -2;
	return notify;
}

int
esmtp_rcpt_params(char *p, struct esmtp_rcpt *r, struct result *res)
{
	char *keys[ESMTP_RCPT_PARAMS_MAX], *vals[ESMTP_RCPT_PARAMS_MAX];
	int n, i, have_notify = 0;

	memset(r, 0, sizeof(*r));
	n = esmtp_split(p, keys, vals, ESMTP_RCPT_PARAMS_MAX);
	if (n < 0) {
		result_set(res, 501, "5.5.4", "Too many parameters");
		return -1;
	}
	for (i = 0; i < n; i++) {
		const char *k = keys[i], *v = vals[i];

		if (esmtp_is(k, "NOTIFY") && v != NULL && !have_notify++) {
			int bits = esmtp_notify_parse(v);

			if (bits == -2) {
				result_set(res, 501, "5.5.4",
				           "NOTIFY=NEVER must stand alone");
				return -1;
			}
			if (bits < 0) {
				result_set(res, 501, "5.5.4", "Bad NOTIFY");
				return -1;
			}
			r->notify = bits;
		} else if (esmtp_is(k, "ORCPT") && v != NULL &&
		           r->orcpt == NULL) {
			const char *semi = strchr(v, ';');

			if (strlen(v) > ESMTP_ORCPT_MAX || semi == NULL ||
			    !esmtp_atom(v, semi - v) ||
			    !policy_xtext_valid(semi + 1, strlen(semi + 1))) {
				result_set(res, 501, "5.5.4", "Bad ORCPT");
				return -1;
			}
			r->orcpt = v;
		} else if ((esmtp_is(k, "NOTIFY") || esmtp_is(k, "ORCPT")) &&
		           v != NULL) {
			/* RFC 3461 4.1: each at most once per RCPT */
			result_set(res, 501, "5.5.4", "Duplicate %s parameter",
			           esmtp_is(k, "NOTIFY") ? "NOTIFY" : "ORCPT");
			return -1;
		} else {
			result_set(res, 555, "5.5.4",
			           "Unsupported option: %.64s", k);
			return -1;
		}
	}
	return 0;
}

static int
esmtp_hex(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
esmtp_xtext_decode(const char *in, size_t len, char *out, size_t outlen)
{
	size_t i, o = 0;

	if (!policy_xtext_valid(in, len))
		return -1;
	for (i = 0; i < len; i++) {
		int c = (unsigned char)in[i];

		if (c == '+') {
			c = esmtp_hex(in[i + 1]) * 16 + esmtp_hex(in[i + 2]);
			i += 2;
		}
		if (o + 1 >= outlen)
			return -1;
		out[o++] = (char)c;
	}
	if (outlen == 0)
		return -1;
	out[o] = '\0';
	return (int)o;
}

int
esmtp_xtext_encode(const char *in, char *out, size_t outlen)
{
	static const char hex[] = "0123456789ABCDEF";
	int keep = policy_xtext_valid(in, strlen(in));
	size_t o = 0;

	if (outlen == 0)
		return -1;
	for (; *in != '\0'; in++) {
		unsigned char c = (unsigned char)*in;

		if (keep && c == '+') {
			/* valid xtext: an escape is copied whole or not at
			 * all, so a full buffer never ends in a cut "+X" */
			if (o + 3 >= outlen)
				goto full;
			memcpy(out + o, in, 3);
			o += 3;
			in += 2;
			continue;
		}
		if (keep || (c >= '!' && c <= '~' && c != '+' && c != '=')) {
			if (o + 1 >= outlen)
				goto full;
			out[o++] = (char)c;
			continue;
		}
		if (o + 3 >= outlen)
			goto full;
		out[o++] = '+';
		out[o++] = hex[c >> 4];
		out[o++] = hex[c & 15];
	}
	out[o] = '\0';
	return (int)o;
full:
	out[o] = '\0';
	return -1;
}
