/*
 * checkdns_int.h - what the files of the check-dns audit share: the
 * state of one audit (struct checkdns), its lookups, and the report
 * functions each file contributes.  checkdns.c runs the lookups and calls
 * the reports in a fixed order; checkdns_mx.c judges the MX set and its
 * targets, checkdns_host.c our HELO name and reverse DNS, checkdns_spf.c
 * the SPF record, checkdns_dmarc.c the DMARC
 * and TLS-RPT records, checkdns_tls.c MTA-STS and TLSA.
 * Private to relay/checkdns*.c.
 */
#ifndef BACKMX_CHECKDNS_INT_H
#define BACKMX_CHECKDNS_INT_H

#include <sys/socket.h>

#include <stddef.h>

#include "dns.h"
#include "mtasts.h"
#include "policy.h"

#define CHECKDNS_MX_MAX 32   /* MX records examined */
#define CHECKDNS_ADDR_MAX 16 /* addresses kept per name */
#define CHECKDNS_TXT_MAX 16  /* TXT strings kept per name */
#define CHECKDNS_LINE_MAX 768
#define CHECKDNS_FETCH_TIMEOUT 15. /* seconds, MTA-STS policy fetch */
#define CHECKDNS_PTR_NAMES 4       /* PTR names followed per address */
#define CHECKDNS_SPF_NODES 40      /* names an SPF record may lead to */

struct checkdns;
struct checkdns_spfnode;

struct checkdns_lookup {
	struct checkdns *c;
	struct dns_query *q;
	void (*take)(struct checkdns_lookup *, const struct dns_result *);
	int index; /* which target / address / name the answer is for */
	int started;
	int linked;                        /* on c->live */
	struct checkdns_lookup *live_next; /* every lookup ever started */
	int done;
	enum dns_status status;
	int secure;
	char why[160];
};

struct checkdns_addrs {
	struct sockaddr_storage a[CHECKDNS_ADDR_MAX];
	int n;
};

struct checkdns_target {
	char host[POLICY_DOMAIN_MAX + 1];
	int pref;
	int literal; /* an IP address where a name belongs */
	int self;    /* our hostname or an alias */
	struct checkdns_lookup a, aaaa;
	char canon[POLICY_DOMAIN_MAX + 1]; /* CNAME target, "" if none */
	struct checkdns_addrs addrs;
};

struct checkdns_txt {
	char *s[CHECKDNS_TXT_MAX];
	int n;
};

/* one of our addresses: its PTR names and whether they lead back */
struct checkdns_ptr {
	struct sockaddr_storage addr;
	struct checkdns_lookup ptr_l;
	char name[CHECKDNS_PTR_NAMES][POLICY_DOMAIN_MAX + 1];
	int nname;
	struct checkdns_lookup fwd[CHECKDNS_PTR_NAMES];
	int confirmed[CHECKDNS_PTR_NAMES];
};

struct checkdns {
	struct dns *dns;
	checkdns_line_cb line_cb;
	checkdns_done_cb done_cb;
	void *arg;

	char domain[POLICY_DOMAIN_MAX + 1]; /* lowercase, no trailing dot */
	char hostname[POLICY_DOMAIN_MAX + 1];
	char **own; /* hostname and aliases */
	int nown;
	int configured; /* domain has a block in the config */
	enum policy_tls tls;

	int pending;
	int reporting;
	int cancelled;
	int nfail;

	struct checkdns_lookup mx_l;
	struct policy_mx mx[CHECKDNS_MX_MAX];
	int nmx;
	int mx_more; /* records beyond CHECKDNS_MX_MAX */

	struct checkdns_lookup txt_l; /* TXT DOMAIN (SPF) */
	struct checkdns_txt txt;
	struct checkdns_spfnode *spf_nodes; /* what the SPF record names */
	int nspf_nodes;
	struct checkdns_lookup dmarc_l; /* TXT _dmarc.DOMAIN */
	struct checkdns_txt dmarc;
	struct checkdns_lookup tlsrpt_l; /* TXT _smtp._tls.DOMAIN */
	struct checkdns_txt tlsrpt;
	struct checkdns_lookup sts_l; /* TXT _mta-sts.DOMAIN */
	struct checkdns_txt sts;
	char sts_id[MTASTS_ID_MAX + 1];
	int sts_valid;                    /* exactly one valid v=STSv1 */
	struct checkdns_lookup stshost_l; /* A mta-sts.DOMAIN */
	struct ev_loop *loop;             /* NULL: policies are not fetched */
	char *cafile;                     /* tls_ca, NULL = system store */
	struct mtasts_fetch *fetch;
	int fetch_done;
	int fetch_ok;
	struct mtasts_policy policy;
	char fetch_err[512];
	struct checkdns_lookup tlsa_l; /* TLSA _25._tcp.HOSTNAME */
	int ntlsa, ntlsa_usable;
	struct checkdns_lookup self_a, self_aaaa;
	struct checkdns_addrs self_addrs; /* own_addrs + host_addrs */
	struct checkdns_addrs
	    own_addrs; /* the machine's, as the caller knows */
	struct checkdns_addrs host_addrs;   /* our hostname's A/AAAA */
	struct checkdns_addrs listen_addrs; /* configured, not wildcards */
	struct checkdns_addrs pub;          /* host + listen: what others see */
	struct checkdns_ptr *ptrs;          /* one per pub address */
	int nptrs;
	struct checkdns_lookup *live; /* chain of every lookup started */

	struct checkdns_target *targets;
	int ntargets;
};

/* checkdns.c */
int checkdns_name_norm(const char *name, char *out, size_t outlen);
int checkdns_lookup_start(struct checkdns *c, struct checkdns_lookup *l,
                          const char *name, int rrtype,
                          void (*take)(struct checkdns_lookup *,
                                       const struct dns_result *));
void checkdns_txt_take(struct checkdns_txt *t, const struct dns_result *r);
void checkdns_txt_free(struct checkdns_txt *t);
void checkdns_addrs_take(struct checkdns_addrs *a, const struct dns_result *r);
int checkdns_addrs_has(const struct checkdns_addrs *a,
                       const struct sockaddr_storage *ss);
void checkdns_addrs_add(struct checkdns_addrs *a,
                        const struct sockaddr_storage *ss);
int checkdns_is_own(const struct checkdns *c, const char *host);
void checkdns_report(struct checkdns *c);
void checkdns_line(struct checkdns *c, const char *level, const char *check,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));
const char *checkdns_addr_str(const struct sockaddr_storage *ss, char *buf,
                              size_t len);
int checkdns_addr_eq(const struct sockaddr_storage *x,
                     const struct sockaddr_storage *y);
void checkdns_addrs_text(const struct checkdns_addrs *a, char *buf, size_t len);

/* checkdns_mx.c */
void checkdns_report_self(struct checkdns *c);
void checkdns_report_target(struct checkdns *c,
                            const struct checkdns_target *t);

/* checkdns_host.c: after our hostname's addresses are known */
void checkdns_host_start(struct checkdns *c);
void checkdns_host_free(struct checkdns *c);
void checkdns_report_helo(struct checkdns *c);
void checkdns_report_ptr(struct checkdns *c);

/* checkdns_spf.c: start after the domain's TXT answer, judge at the end */
void checkdns_spf_start(struct checkdns *c);
void checkdns_spf_free(struct checkdns *c);
void checkdns_report_spf(struct checkdns *c);

/* checkdns_dmarc.c */
void checkdns_take_dmarc(struct checkdns_lookup *l, const struct dns_result *r);
void checkdns_take_tlsrpt(struct checkdns_lookup *l,
                          const struct dns_result *r);
void checkdns_report_dmarc(struct checkdns *c);
void checkdns_report_tlsrpt(struct checkdns *c);

/* checkdns_tls.c */
void checkdns_take_sts(struct checkdns_lookup *l, const struct dns_result *r);
void checkdns_take_tlsa(struct checkdns_lookup *l, const struct dns_result *r);
void checkdns_report_sts(struct checkdns *c);
void checkdns_report_tlsa(struct checkdns *c);

#endif
