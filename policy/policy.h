/*
 * policy.h - pure decisions of backmx: address parsing, the domain table
 * and recipient lists, percent-hack gating, loop detection, the MX cut.
 *
 * Nothing here does network I/O, DNS or disk writes, and nothing logs:
 * every decision returns a status and fills a struct result that the
 * caller replies with, logs, or puts in a bounce.  The only file reads
 * are recipient lists (policy_domain_load_recipients).
 *
 * Ownership: struct policy owns its domains, a domain owns its recipient
 * set.  policy_free() releases everything; policy_free(NULL) is a no-op.
 */
#ifndef BACKMX_POLICY_H
#define BACKMX_POLICY_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/*
 * The one result type: what a session replies, what a log line prints,
 * what a bounce reports.  code = SMTP reply code (250, 452, 550, ...),
 * enh = enhanced status "5.1.1" ("" when none), text = human text.
 */
struct result {
	int code;
	char enh[12];
	char text[256];
};

/* result_set - fill r; fmt is printf-style human text */
void result_set(struct result *r, int code, const char *enh, const char *fmt,
		...) __attribute__((format(printf, 4, 5)));

/* ------------------------------------------------------------------ */
/* Addresses (address.c) */

#define POLICY_LOCAL_MAX 64	/* RFC 5321 4.5.3.1.1 */
#define POLICY_DOMAIN_MAX 255	/* 4.5.3.1.2 */
#define POLICY_PATH_MAX 256	/* 4.5.3.1.3 */

enum policy_path_kind {
	POLICY_PATH_NULL,	/* <> (only meaningful for MAIL FROM) */
	POLICY_PATH_POSTMASTER,	/* <Postmaster> without a domain (RCPT only) */
	POLICY_PATH_MAILBOX,	/* local@domain */
};

struct policy_path {
	enum policy_path_kind kind;
	/* local part exactly as sent (quotes kept if quoted) */
	char local[POLICY_LOCAL_MAX * 2 + 3];
	/* domain as sent; lowercased copy in domain_lc */
	char domain[POLICY_DOMAIN_MAX + 1];
	char domain_lc[POLICY_DOMAIN_MAX + 1];
	int quoted;	/* local part was a quoted-string */
	int literal;	/* domain is an address literal [...] */
	int utf8;	/* address holds non-ASCII octets */
	int source_route; /* an A-d-l was present (and ignored) */
	/* "local@domain" as it will be stored/forwarded */
	char address[POLICY_PATH_MAX + 8];
};

#define POLICY_PARSE_SMTPUTF8 0x01	/* client gave SMTPUTF8 on MAIL */
#define POLICY_PARSE_RCPT 0x02		/* forward-path: <Postmaster> ok, <> not */

/*
 * policy_parse_path - parse an RFC 5321 Reverse-path / Forward-path
 * starting at s (which points at "<", after "MAIL FROM:" / "RCPT TO:"
 * and optional spaces).  On success returns 0, fills *out, and sets
 * *endp to the first octet after ">".  On failure returns -1 and sets
 * *res (501 5.1.3 syntax, 553 5.6.7 UTF-8 without SMTPUTF8, ...).
 */
int policy_parse_path(const char *s, size_t len, int flags,
		      struct policy_path *out, size_t *endp,
		      struct result *res);

/* ------------------------------------------------------------------ */
/* Domains and recipients (domains.c) */

enum policy_tls {
	POLICY_TLS_MAY,
	POLICY_TLS_ENCRYPT,
	POLICY_TLS_VERIFY,
	POLICY_TLS_DANE,
	POLICY_TLS_MTASTS,	/* RFC 8461, after DANE (forward.c) */
};

struct policy_rcptset;		/* hash set of lowercased entries */

struct policy_domain {
	char name[POLICY_DOMAIN_MAX + 1];	/* lowercase */
	char *recipients_file;		/* NULL when "recipients *" */
	int recipients_any;		/* "recipients *" */
	int route_static;		/* 0 = route mx */
	char route_host[POLICY_DOMAIN_MAX + 1]; /* name or address w/o [] */
	int route_literal;		/* route given as [addr]:port */
	int route_port;
	enum policy_tls tls;
	int percent_hack;
	long queue_lifetime;		/* seconds; 0 = global default */
	long delay_warning;		/* seconds; 0 = global, -1 = off */
	struct policy_rcptset *rcpts;
	int line;			/* config line of the block, for -t */
};

struct policy {
	char hostname[POLICY_DOMAIN_MAX + 1];	/* lowercase */
	char **aliases;			/* hostname_alias; lowercase */
	int naliases;
	struct policy_domain **domains;
	int ndomains;
	void *index;			/* private: domain hash */
};

struct policy *policy_new(const char *hostname);
void policy_free(struct policy *p);
int policy_add_alias(struct policy *p, const char *name);
/* policy_add_domain - new domain, defaults filled; NULL if duplicate */
struct policy_domain *policy_add_domain(struct policy *p, const char *name);
/* policy_find_domain - case-insensitive lookup, NULL if not ours */
struct policy_domain *policy_find_domain(const struct policy *p,
					 const char *name);
/* policy_is_own_name - hostname or an alias (case-insensitive) */
int policy_is_own_name(const struct policy *p, const char *name);

/*
 * policy_domain_load_recipients - (re)read d->recipients_file.
 * On error returns -1 and writes "FILE:LINE: message" into err.
 * Entries: "local", "local@domain", "@domain" (whole domain), "#" comments.
 */
int policy_domain_load_recipients(struct policy_domain *d, char *err,
				  size_t errlen);
/*
 * policy_domain_has_rcpt - is local@d a valid recipient?  local is the
 * local part as sent (quoted forms allowed: "alice" matches alice).
 * Postmaster always matches; ASCII local parts match case-insensitively.
 */
int policy_domain_has_rcpt(const struct policy_domain *d, const char *local);

/*
 * policy_local_canon - the comparison key of a local part: quoted forms
 * that need no quotes are unquoted ("a.b" -> a.b), the rest get minimal
 * quoting, and an all-ASCII key is lowercased.  For comparison only, never
 * for routing.  Returns -1 if local is not a valid local part or the key
 * does not fit in outlen.
 */
int policy_local_canon(const char *local, char *out, size_t outlen);

/* ------------------------------------------------------------------ */
/* Recipient decision (address.c + domains.c) */

struct policy_rcpt {
	struct policy_path path;	/* as parsed */
	const struct policy_domain *domain;
	char address[POLICY_PATH_MAX + 8];	/* what we deliver to */
	int percent_hack;		/* rewritten from user%dom@us */
	char orcpt[POLICY_PATH_MAX + 16];	/* "rfc822;orig" for % hack */
};

/*
 * policy_check_rcpt - the whole RCPT decision for the forward-path at s.
 * Returns 0 and fills *out when the recipient is accepted (res = 250
 * 2.1.5), -1 with *res set otherwise (550 5.1.1 unknown user, 550 5.7.1
 * relaying denied, 501 5.1.3 syntax, ...).  No form of address that is
 * not ours gets 0.
 */
int policy_check_rcpt(const struct policy *p, const char *s, size_t len,
		      int flags, struct policy_rcpt *out, size_t *endp,
		      struct result *res);

/* ------------------------------------------------------------------ */
/* DSN parameters (address.c) */

/* policy_xtext_valid - RFC 3461 xtext syntax check */
int policy_xtext_valid(const char *s, size_t len);

/* ------------------------------------------------------------------ */
/* Loop detection (loop.c) */

/*
 * Streaming header scanner: feed the message as it arrives (any split);
 * it stops looking after the header/body separator.  Counts Received:
 * fields and Received fields whose "by" names our hostname.
 */
struct policy_hdrscan {
	const char *hostname;
	int state;
	int in_header;		/* 0 once the empty line was seen */
	int received;		/* number of Received: fields */
	int received_by_us;	/* of which "by <hostname>" */
	char field[512];	/* current field start, bounded */
	size_t flen;
	int field_is_received;
	char message_id[256];	/* Message-ID without <>, for the log */
};

void policy_hdrscan_init(struct policy_hdrscan *h, const char *hostname);
void policy_hdrscan_feed(struct policy_hdrscan *h, const char *data,
			 size_t len);
/* policy_hdrscan_check - 0 ok, -1 loop: res = 554 5.4.6 */
int policy_hdrscan_check(struct policy_hdrscan *h, int max_hops,
			 struct result *res);

/* ------------------------------------------------------------------ */
/* MX cut (loop.c), RFC 5321 5.1 */

struct policy_mx {
	char host[POLICY_DOMAIN_MAX + 1];
	int pref;
	int self;	/* set by caller: names us (by name or address) */
};

enum policy_mx_verdict {
	POLICY_MX_OK,		/* n > 0 usable records left */
	POLICY_MX_SELF_BEST,	/* we are the best MX: 5.4.6 loops back */
	POLICY_MX_NULL,		/* null MX: 5.1.10 */
	POLICY_MX_EMPTY,	/* no records given */
};

/*
 * policy_mx_cut - sort by preference, mark records naming our hostname or
 * an alias as self (records the caller already marked stay marked), drop
 * the lowest self preference and everything worse, randomise equal
 * preferences with rnd (returns a value in [0, n)).  *n is updated.
 */
enum policy_mx_verdict policy_mx_cut(const struct policy *p,
				     struct policy_mx *mx, int *n,
				     unsigned (*rnd)(unsigned n));

#endif
