/*
 * stats.h - the daemon's counters, shown by `backmxctl stats` and the
 * Prometheus endpoint.  One global instance per process, owned by
 * main.c.  With `workers N` (worker.c) each worker publishes its copy
 * into its slot of a MAP_SHARED table once per loop iteration, and the
 * parent reads the sum (stats.c).
 */
#ifndef BACKMX_STATS_H
#define BACKMX_STATS_H

#include <stddef.h>
#include <stdint.h>

struct stats {
	uint64_t sessions;         /* inbound SMTP sessions accepted */
	uint64_t sessions_refused; /* max_clients / per-IP limit */
	uint64_t accepted;         /* messages queued (250 after DATA) */
	uint64_t accepted_bytes;
	uint64_t refused_relay;     /* 550 5.7.1 */
	uint64_t refused_user;      /* 550 5.1.1 */
	uint64_t refused_syntax;    /* 501 / 553 address syntax */
	uint64_t refused_loop;      /* 554 5.4.6 */
	uint64_t refused_size;      /* 552 5.3.4 */
	uint64_t refused_smuggling; /* bare CR/LF in DATA */
	uint64_t refused_spool;     /* 4xx spool trouble */
	uint64_t refused_other;
	uint64_t percent_hack;          /* recipients rewritten */
	uint64_t etrn;                  /* ETRN requests served */
	uint64_t delivered;             /* recipients delivered */
	uint64_t deferred;              /* recipient attempts deferred */
	uint64_t bounced;               /* recipients bounced */
	uint64_t dsn_sent;              /* DSN messages generated */
	uint64_t tls_inbound;           /* STARTTLS handshakes completed */
	uint64_t tls_outbound;          /* recipients delivered over TLS */
	uint64_t tls_outbound_verified; /* ... with a verified certificate */
	uint64_t tls_outbound_dane;     /* ... authenticated by DANE */
	uint64_t tls_deferred; /* attempts deferred by the tls policy */
	/* filtering at the backup (config_filter.h) */
	uint64_t proxy_dropped;        /* PROXY: not allowed, bad header */
	uint64_t refused_client_limit; /* 421 4.7.0 client_limit */
	uint64_t refused_client_rate;  /* 421 4.7.0 client_rate */
	uint64_t dnsbl_rejected;       /* 554 5.7.1 listed */
	uint64_t dnsbl_accepted;       /* looked up, not listed */
	uint64_t dnsbl_tempfailed;     /* lookup failed: let through */
	uint64_t milter_accepted;      /* messages a milter let through */
	uint64_t milter_rejected;      /* 5xx from a milter */
	uint64_t milter_tempfailed;    /* 4xx from a milter */
	uint64_t milter_discarded;     /* accepted and dropped */
	uint64_t milter_quarantined;   /* held in the spool */
	uint64_t milter_failed;        /* milter down/slow/garbage */
	uint64_t milter_latency_ms;    /* sum of milter reply waits */
	uint64_t milter_replies;       /* replies waited for */
	uint64_t dns_deferred;         /* deliveries deferred by a DNS answer */
	/* recipient verification (rcpt_verify.c, callout.c) */
	uint64_t verify_hits;          /* answered from the cache */
	uint64_t verify_misses;        /* not cached: a source was asked */
	uint64_t verify_callouts;      /* RCPT TO questions sent to a primary */
	uint64_t verify_ldap;          /* LDAP lookups sent */
	uint64_t verify_valid;         /* verdicts: 250 (not from a file) */
	uint64_t verify_invalid;       /* 550 5.1.1 */
	uint64_t verify_unknown;       /* 450 4.4.3 */
	uint64_t verify_stale;         /* 250 on a stale cached yes */
	uint64_t accept_when_refused;  /* 451 4.7.1: the primary is up */
	uint64_t accept_when_accepted; /* taken while the primary is down */
	uint64_t sessions_active;      /* gauge */
	uint64_t deliveries_active;    /* gauge */
};

extern struct stats stats;

/* stats_share - a shared table of nslots worker slots (before fork);
 * -1 when it cannot be mapped */
int stats_share(int nslots);
/* stats_set_slot - this process is the worker of slot (after fork);
 * stats_publish - copy its `stats` there */
void stats_set_slot(int slot);
void stats_publish(void);
/* stats_value - the counter at offset (in struct stats): this
 * process's own plus every other slot */
uint64_t stats_value(size_t offset);
/* stats_others_sessions - open sessions of the other workers (for
 * max_clients, which holds for the daemon as a whole) */
uint64_t stats_others_sessions(void);

#endif
