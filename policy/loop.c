/*
 * loop.c - loop detection and the backup-MX preference cut.
 *
 * The header scanner is fed by relay/smtpd.c with the message as it
 * arrives (any split, after dot-unstuffing) and asked once at the end of
 * DATA; it counts Received: fields and those naming us as "by".
 * policy_mx_cut is called by relay/fwd_route.c with a domain's MX records
 * (RFC 5321 5.1): we never forward to ourselves or to a worse MX.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy.h"

/* ------------------------------------------------------------------ */
/* header scanner */

enum {
	HS_BOL,    /* at the start of a header line */
	HS_LINE,   /* inside a header line */
	HS_BOL_CR, /* CR at the start of a line: maybe the empty line */
	HS_BODY,   /* past the header: nothing more to see */
};

void
policy_hdrscan_init(struct policy_hdrscan *h, const char *hostname)
{
	memset(h, 0, sizeof(*h));
	h->hostname = hostname;
	h->state = HS_BOL;
	h->in_header = 1;
}

/* hdr_skip - skip blanks and (nested) comments from s[*i] */
static void
hdr_skip(const char *s, size_t n, size_t *i)
{
	int depth = 0;

	while (*i < n) {
		char c = s[*i];

		if (depth > 0) {
			if (c == '\\' && *i + 1 < n)
				++*i;
			else if (c == '(')
				depth++;
			else if (c == ')')
				depth--;
		} else if (c == '(')
			depth++;
		else if (c != ' ' && c != '\t')
			return;
		++*i;
	}
}

/* hdr_token - the word at s[*i]: up to a blank, comment or ";" */
static size_t
hdr_token(const char *s, size_t n, size_t *i, const char **tok)
{
	size_t start = *i;

	while (*i < n && s[*i] != ' ' && s[*i] != '\t' && s[*i] != '(' &&
	       s[*i] != ';')
		++*i;
	*tok = s + start;
	return *i - start;
}

/* hdr_by_is_us - does the Received value v name us in its "by" clause? */
static int
hdr_by_is_us(const char *v, size_t n, const char *hostname)
{
	const char *tok;
	size_t i = 0, tl, hl;

	if (hostname == NULL || (hl = strlen(hostname)) == 0)
		return 0;
	if (hostname[hl - 1] == '.')
		hl--;
	for (;;) {
		hdr_skip(v, n, &i);
		if (i >= n || v[i] == ';')
			return 0;
		tl = hdr_token(v, n, &i, &tok);
		if (tl == 0) {
			i++;
			continue;
		}
		if (tl == 4 && strncasecmp(tok, "from", 4) == 0) {
			/* the from domain may itself read "by" */
			hdr_skip(v, n, &i);
			hdr_token(v, n, &i, &tok);
			continue;
		}
		if (tl == 2 && strncasecmp(tok, "by", 2) == 0) {
			hdr_skip(v, n, &i);
			tl = hdr_token(v, n, &i, &tok);
			if (tl > 0 && tok[tl - 1] == '.')
				tl--;
			return tl == hl && strncasecmp(tok, hostname, hl) == 0;
		}
	}
}

/* hdr_message_id - keep the first Message-ID's <...> (bounded, for logs) */
static void
hdr_message_id(struct policy_hdrscan *h, size_t n)
{
	static const char name[] = "message-id:";
	size_t i = sizeof(name) - 1, j = 0;

	if (h->message_id[0] != '\0' || n < i ||
	    strncasecmp(h->field, name, i) != 0)
		return;
	while (i < n && (h->field[i] == ' ' || h->field[i] == '\t'))
		i++;
	if (i < n && h->field[i] == '<')
		i++;
	while (i < n && h->field[i] != '>' && h->field[i] != ' ' &&
	       j < sizeof(h->message_id) - 1) {
		unsigned char c = h->field[i++];

		h->message_id[j++] = c < 0x20 || c == 0x7f ? '?' : c;
	}
	h->message_id[j] = '\0';
}

/* hdr_field_done - judge the field collected so far */
static void
hdr_field_done(struct policy_hdrscan *h)
{
	static const char name[] = "received";
	size_t i, n = h->flen;

	if (n == 0)
		return;
	h->flen = 0;
	h->field_is_received = 0;
	hdr_message_id(h, n);
	if (n < sizeof(name) - 1 ||
	    strncasecmp(h->field, name, sizeof(name) - 1) != 0)
		return;
	/* "Received" [WSP] ":" (RFC 5322 obsolete syntax allows the WSP) */
	for (i = sizeof(name) - 1;
	     i < n && (h->field[i] == ' ' || h->field[i] == '\t'); i++)
		;
	if (i >= n || h->field[i] != ':')
		return;
	h->field_is_received = 1;
	h->received++;
	if (hdr_by_is_us(h->field + i + 1, n - i - 1, h->hostname))
		h->received_by_us++;
}

static void
hdr_append(struct policy_hdrscan *h, char c)
{
	/* bounded: a field longer than the buffer is judged on its start,
	 * which holds the name and, for our own Received, the "by" */
	if (h->flen < sizeof(h->field))
		h->field[h->flen++] = c;
}

void
policy_hdrscan_feed(struct policy_hdrscan *h, const char *data, size_t len)
{
	size_t i;

	for (i = 0; i < len && h->state != HS_BODY; i++) {
		char c = data[i];

		switch (h->state) {
		case HS_BOL_CR:
			if (c == '\n') {
				hdr_field_done(h);
				h->state = HS_BODY;
				h->in_header = 0;
				break;
			}
			/* a bare CR: ignore it, take c as a line start */
			h->state = HS_BOL;
			/* FALLTHROUGH */
		case HS_BOL:
			if (c == ' ' || c == '\t') {
				/* folded: the field goes on (unfolded) */
				hdr_append(h, c);
				h->state = HS_LINE;
			} else if (c == '\r') {
				h->state = HS_BOL_CR;
			} else if (c == '\n') {
				hdr_field_done(h);
				h->state = HS_BODY;
				h->in_header = 0;
			} else {
				hdr_field_done(h);
				hdr_append(h, c);
				h->state = HS_LINE;
			}
			break;
		case HS_LINE:
			if (c == '\n')
				h->state = HS_BOL;
			else if (c != '\r')
				hdr_append(h, c);
			break;
		}
	}
}

int
policy_hdrscan_check(struct policy_hdrscan *h, int max_hops, struct result *res)
{
	/* a header that ran to the end of the message has a field pending */
	if (h->in_header)
		hdr_field_done(h);
	if (max_hops > 0 && h->received > max_hops) {
		result_set(res, 554, "5.4.6",
		           "Too many hops: %d Received: fields (limit %d), "
		           "mail loop?",
		           h->received, max_hops);
		return -1;
	}
	if (h->received_by_us > 1) {
		result_set(res, 554, "5.4.6",
		           "Mail loop: message already passed through %s %d "
		           "times",
		           h->hostname, h->received_by_us);
		return -1;
	}
	result_set(res, 250, "2.0.0", "Ok");
	return 0;
}

/* ------------------------------------------------------------------ */
/* MX cut */

static int
mx_is_null(const struct policy_mx *m)
{
	return m->host[0] == '\0' || strcmp(m->host, ".") == 0;
}

static unsigned
mx_rnd_default(unsigned n)
{
	return (unsigned)random() % n;
}

enum policy_mx_verdict
policy_mx_cut(const struct policy *p, struct policy_mx *mx, int *n,
              unsigned (*rnd)(unsigned n))
{
	struct policy_mx t;
	int i, j, k, cnt, selfpref = -1;

	if (*n <= 0 || mx == NULL) {
		*n = 0;
		return POLICY_MX_EMPTY;
	}
	if (rnd == NULL)
		rnd = mx_rnd_default;
	/* RFC 7505: "0 ." alone is a null MX; among others it is unusable */
	for (i = 0, cnt = 0; i < *n; i++)
		if (!mx_is_null(&mx[i]))
			mx[cnt++] = mx[i];
	if (cnt == 0) {
		*n = 0;
		return POLICY_MX_NULL;
	}
	for (i = 0; i < cnt; i++) {
		if (policy_is_own_name(p, mx[i].host))
			mx[i].self = 1;
		if (mx[i].self && (selfpref < 0 || mx[i].pref < selfpref))
			selfpref = mx[i].pref;
	}
	/* insertion sort: few records, stable */
	for (i = 1; i < cnt; i++) {
		t = mx[i];
		for (j = i; j > 0 && mx[j - 1].pref > t.pref; j--)
			mx[j] = mx[j - 1];
		mx[j] = t;
	}
	/* we are a backup: nothing at our preference or worse (5.1) */
	if (selfpref >= 0) {
		for (i = 0; i < cnt && mx[i].pref < selfpref; i++)
			;
		cnt = i;
	}
	*n = cnt;
	if (cnt == 0)
		return POLICY_MX_SELF_BEST;
	/* equal preferences in random order (MUST) */
	for (i = 0; i < cnt; i = j) {
		for (j = i + 1; j < cnt && mx[j].pref == mx[i].pref; j++)
			;
		for (k = j - i; k > 1; k--) {
			unsigned r = rnd((unsigned)k) % (unsigned)k;

			t = mx[i + k - 1];
			mx[i + k - 1] = mx[i + r];
			mx[i + r] = t;
		}
	}
	return POLICY_MX_OK;
}
