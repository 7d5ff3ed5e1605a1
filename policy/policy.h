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

#define POLICY_LOCAL_MAX 64   /* RFC 5321 4.5.3.1.1 */
#define POLICY_DOMAIN_MAX 255 /* 4.5.3.1.2 */
#define POLICY_PATH_MAX 256   /* 4.5.3.1.3 */

enum policy_path_kind {
	POLICY_PATH_NULL,       /* <> (only meaningful for MAIL FROM) */
	POLICY_PATH_POSTMASTER, /* <Postmaster> without a domain (RCPT only) */
	POLICY_PATH_MAILBOX,    /* local@domain */
};

struct policy_path {
	enum policy_path_kind kind;
	/* local part exactly as sent (quotes kept if quoted) */
	char local[POLICY_LOCAL_MAX * 2 + 3];
	/* domain as sent; lowercased copy in domain_lc */
	char domain[POLICY_DOMAIN_MAX + 1];
	char domain_lc[POLICY_DOMAIN_MAX + 1];
	int quoted;       /* local part was a quoted-string */
	int literal;      /* domain is an address literal [...] */
	int utf8;         /* address holds non-ASCII octets */
	int source_route; /* an A-d-l was present (and ignored) */
	/* "local@domain" as it will be stored/forwarded */
	char address[POLICY_PATH_MAX + 8];
};

#define POLICY_PARSE_SMTPUTF8 0x01 /* client gave SMTPUTF8 on MAIL */
#define POLICY_PARSE_RCPT 0x02     /* forward-path: <Postmaster> ok, <> not */

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
	POLICY_TLS_MTASTS, /* RFC 8461, after DANE (fwd_tls.c) */
};

struct policy_rcptset; /* hash set of lowercased entries */

/* recipient sources of a domain, in the order of its `recipients` line */
enum policy_src_kind {
	POLICY_SRC_FILE,    /* a list file (all files form one set) */
	POLICY_SRC_ANY,     /* "*" */
	POLICY_SRC_LDAP,    /* "ldap:FILE" (relay/ldap_src.c) */
	POLICY_SRC_CALLOUT, /* ask the primary (relay/callout.c) */
};

struct policy_src {
	enum policy_src_kind kind;
	char *path; /* FILE, LDAP: absolute path; else NULL */
};

enum policy_verify_down {
	POLICY_VDOWN_ACCEPT_KNOWN, /* listed or cached yes: 250, else 450 */
	POLICY_VDOWN_TEMPFAIL,     /* not in a file or LDAP: 450 */
};

enum policy_accept_when {
	POLICY_ACCEPT_ALWAYS,
	POLICY_ACCEPT_PRIMARY_DOWN, /* 451 4.7.1 while the primary answers */
};

struct policy_domain {
	char name[POLICY_DOMAIN_MAX + 1];       /* lowercase */
	char *recipients_file;                  /* NULL when "recipients *" */
	int recipients_any;                     /* "recipients *" */
	int route_static;                       /* 0 = route mx */
	char route_host[POLICY_DOMAIN_MAX + 1]; /* name or address w/o [] */
	int route_literal;                      /* route given as [addr]:port */
	int route_port;
	enum policy_tls tls;
	int percent_hack;
	long queue_lifetime; /* seconds; 0 = global default */
	long delay_warning;  /* seconds; 0 = global, -1 = off */
	struct policy_rcptset *rcpts;
	int line; /* config line of the block, for -t */
	/* round 2: recipients the primary knows (recipients.c) */
	struct policy_src *srcs; /* NULL: recipients_file / _any only */
	int nsrcs;
	int rcpt_async;      /* an ldap: or callout source */
	long verify_pos_ttl; /* verify_cache, seconds (30d) */
	long verify_neg_ttl; /* (1h) */
	enum policy_verify_down verify_down;
	enum policy_accept_when accept_when;
};

struct policy {
	char hostname[POLICY_DOMAIN_MAX + 1]; /* lowercase */
	char **aliases;                       /* hostname_alias; lowercase */
	int naliases;
	struct policy_domain **domains;
	int ndomains;
	void *index; /* private: domain hash */
};

struct policy *policy_new(const char *hostname);
void policy_free(struct policy *p);
int policy_add_alias(struct policy *p, const char *name);
/* policy_add_domain - new domain, defaults filled; NULL if duplicate */
struct policy_domain *policy_add_domain(struct policy *p, const char *name);
/* policy_addr_domain_lc - the domain after the last '@' of address,
 * lowercased, into out (POLICY_DOMAIN_MAX + 1 octets); -1 when address is
 * NULL, has no '@' or its domain is longer than POLICY_DOMAIN_MAX */
int policy_addr_domain_lc(const char *address, char *out);
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
/* policy_domain_nrcpts - entries the files gave d (an "@domain" entry
 * counts as one); 0 when none were read */
size_t policy_domain_nrcpts(const struct policy_domain *d);
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
/* Recipient decision (rcpt_gate.c, on address.c and domains.c) */

struct policy_rcpt {
	struct policy_path path; /* as parsed */
	const struct policy_domain *domain;
	char address[POLICY_PATH_MAX + 8]; /* what we deliver to */
	int percent_hack;                  /* rewritten from user%dom@us */
	char orcpt[POLICY_PATH_MAX + 16];  /* "rfc822;orig" for % hack */
	int listed; /* a file or "*" holds it (return 1 only) */
};

/*
 * policy_check_rcpt - the whole RCPT decision for the forward-path at s.
 * Returns 0 and fills *out when the recipient is accepted (res = 250
 * 2.1.5), -1 with *res set otherwise (550 5.1.1 unknown user, 550 5.7.1
 * relaying denied, 501 5.1.3 syntax, ...).  No form of address that is
 * not ours gets 0.  Returns 1 with *out filled when the files cannot
 * decide alone (policy_rcpt_async: an ldap:/callout source or accept_when
 * primary-down): the relay asks those sources and combines the answers
 * with policy_rcpt_decide; out->listed says whether a file said yes.
 */
int policy_check_rcpt(const struct policy *p, const char *s, size_t len,
                      int flags, struct policy_rcpt *out, size_t *endp,
                      struct result *res);

/* ------------------------------------------------------------------ */
/* Recipient sources (recipients.c) */

enum policy_answer {
	POLICY_ANS_UNKNOWN, /* the source cannot answer now */
	POLICY_ANS_YES,
	POLICY_ANS_NO,
};

/* policy_domain_add_src - append a source (path copied); -1 no memory */
int policy_domain_add_src(struct policy_domain *d, enum policy_src_kind kind,
                          const char *path);
/* policy_domain_has_src - does d use a source of this kind? */
int policy_domain_has_src(const struct policy_domain *d,
                          enum policy_src_kind kind);
/* policy_rcpt_async - must the relay ask more than the files? */
int policy_rcpt_async(const struct policy_domain *d, int listed);

/*
 * What the sources said about one address, for policy_rcpt_decide.
 * yes: some source said yes (listed, LDAP, a fresh cached or live
 * callout yes); unknown: some source could not answer (LDAP down,
 * primary down or 4xx); stale_yes: a callout yes older than the
 * positive TTL is cached; no_text: the primary's 5xx text or NULL.
 */
struct policy_rcpt_answers {
	int yes;
	int unknown;
	int stale_yes;
	const char *no_text;
};

/*
 * policy_rcpt_decide - the RCPT verdict: 0 with res = 250 2.1.5 when the
 * recipient is valid, -1 with res = 550 5.1.1 (every source said no) or
 * 450 4.4.3 (unknown, per verify_down).  Never 0 for an address nobody
 * confirmed: a stale yes counts only with verify_down accept-known.
 */
int policy_rcpt_decide(const struct policy_domain *d, const char *address,
                       const struct policy_rcpt_answers *a, struct result *res);
/*
 * policy_accept_when_check - accept_when primary-down: -1 with res =
 * 451 4.7.1 when primary_up, else 0.  Always 0 for accept_when always.
 */
int policy_accept_when_check(const struct policy_domain *d, const char *address,
                             int primary_up, struct result *res);

/*
 * policy_ldap_escape - RFC 4515 3 escaping of an assertion value: '*',
 * '(', ')', '\\', NUL and every octet >= 0x80 or < 0x20 become "\XX".
 * Returns the length written (NUL-terminated) or -1 when out is short.
 */
int policy_ldap_escape(const char *in, size_t inlen, char *out, size_t outlen);
/*
 * policy_ldap_filter - expand tmpl: %s the address, %u the local part,
 * %d the domain (each escaped), %% a '%'.  -1 when out is short or tmpl
 * holds another % sequence.
 */
int policy_ldap_filter(const char *tmpl, const char *address, char *out,
                       size_t outlen);

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
	int in_header;      /* 0 once the empty line was seen */
	int received;       /* number of Received: fields */
	int received_by_us; /* of which "by <hostname>" */
	char field[512];    /* current field start, bounded */
	size_t flen;
	int field_is_received;
	char message_id[256]; /* Message-ID without <>, for the log */
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
	int self; /* set by caller: names us (by name or address) */
};

enum policy_mx_verdict {
	POLICY_MX_OK,        /* n > 0 usable records left */
	POLICY_MX_SELF_BEST, /* we are the best MX: 5.4.6 loops back */
	POLICY_MX_NULL,      /* null MX: 5.1.10 */
	POLICY_MX_EMPTY,     /* no records given */
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
