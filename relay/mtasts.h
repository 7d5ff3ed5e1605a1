/*
 * mtasts.h - MTA-STS (RFC 8461): the _mta-sts TXT record, the policy
 * file, MX pattern matching (mtasts.c), the HTTPS fetch of the policy on
 * the libev loop (mtasts_fetch.c), and an in-memory policy cache
 * (mtasts_cache.c).
 *
 * The parsers are pure and bounded (fuzzed in tests/fuzz/fuzz_mtasts.c).
 * The fetch never resolves names itself: the caller (fwd_tls.c) gives the
 * already-resolved address of mta-sts.<domain> and the CA file.
 *
 * Who frees what: a struct mtasts_policy is a plain value (no pointers
 * inside), copy it freely.  A fetch frees itself after its callback has
 * returned; mtasts_fetch_cancel() frees it without calling back.  The
 * cache owns its copies; mtasts_cache_get() returns a pointer valid until
 * the next mtasts_cache_put/free.
 */
#ifndef BACKMX_MTASTS_H
#define BACKMX_MTASTS_H

#include <ev.h>
#include <stddef.h>
#include <sys/socket.h>
#include <time.h>

#define MTASTS_ID_MAX 32         /* id=: 1-32 alnum */
#define MTASTS_MAX_AGE 31557600L /* RFC 8461 3.2: at most one year */
#define MTASTS_MAX_MX 32         /* mx: patterns in one policy */
#define MTASTS_NAME_MAX 253      /* a domain name, no trailing dot */
#define MTASTS_BODY_MAX 65536    /* policy file, octets */
#define MTASTS_HEAD_MAX 16384    /* HTTP status line + headers */
#define MTASTS_REFRESH 86400L    /* refetch a cached policy daily */

enum mtasts_mode {
	MTASTS_MODE_NONE,
	MTASTS_MODE_TESTING,
	MTASTS_MODE_ENFORCE,
};

struct mtasts_policy {
	enum mtasts_mode mode;
	long max_age; /* seconds */
	int nmx;
	char mx[MTASTS_MAX_MX][MTASTS_NAME_MAX + 3]; /* lower case, "*." kept */
};

/*
 * mtasts_parse_txt - one TXT string (the RR's strings joined): 0 and the
 * id copied to id (idlen >= MTASTS_ID_MAX + 1) when it is a valid
 * "v=STSv1; id=...;" record, -1 otherwise (id set to "").
 */
int mtasts_parse_txt(const char *txt, char *id, size_t idlen);
/*
 * mtasts_txt_select - RFC 8461 3.1 over all TXT records of
 * _mta-sts.<domain>: keep those starting "v=STSv1"; exactly one, and it
 * valid, gives 0 and its id; anything else -1 (no policy).
 */
int mtasts_txt_select(char *const *txt, int n, char *id, size_t idlen);
/*
 * mtasts_parse_policy - the policy file body (len octets, need not be
 * NUL-terminated): 0 and *out filled, or -1 with a reason in err.
 */
int mtasts_parse_policy(const char *body, size_t len, struct mtasts_policy *out,
                        char *err, size_t errlen);
/*
 * mtasts_valid_name - 1 when s[0..n) is an LDH domain name of A-labels:
 * labels 1-63 octets of letters, digits and inner hyphens, at most
 * MTASTS_NAME_MAX in all, no trailing dot
 */
int mtasts_valid_name(const char *s, size_t n);
/* mtasts_mx_match - 1 when mxhost (trailing dot allowed) matches a pattern */
int mtasts_mx_match(const struct mtasts_policy *p, const char *mxhost);
const char *mtasts_mode_str(enum mtasts_mode m);

/*
 * mtasts_http_response - parse an HTTP/1.x response held in buf[0..len).
 * eof says the peer has closed.  Returns 0 when more input is needed,
 * 1 when complete (the body, decoded if chunked, copied to body, its
 * length in *bodylen; bodymax >= MTASTS_BODY_MAX), -1 on error (err).
 * Only status 200 is accepted; redirects are reported, never followed.
 */
int mtasts_http_response(const char *buf, size_t len, int eof, char *body,
                         size_t bodymax, size_t *bodylen, char *err,
                         size_t errlen);

/* ------------------------------------------------------------------ */
/* the fetch */

struct mtasts_fetch;
/* policy is NULL on error, then err says why; both valid during the call */
typedef void (*mtasts_fetch_cb)(void *arg, const struct mtasts_policy *policy,
                                const char *err);

/*
 * mtasts_fetch_start - GET https://mta-sts.<domain>/.well-known/mta-sts.txt
 * from address sa (port 443 when sa's port is 0), the certificate verified
 * for mta-sts.<domain> against cafile (NULL = the system store), within
 * timeout seconds.  The callback runs exactly once, never inside this
 * call, unless the fetch is cancelled first.  Returns NULL only when out
 * of memory or domain is not a valid name (err set).
 */
struct mtasts_fetch *mtasts_fetch_start(struct ev_loop *loop,
                                        const char *domain,
                                        const struct sockaddr *sa,
                                        socklen_t salen, const char *cafile,
                                        double timeout, mtasts_fetch_cb cb,
                                        void *arg, char *err, size_t errlen);
/* mtasts_fetch_cancel - stop and free, no callback; not from inside it */
void mtasts_fetch_cancel(struct mtasts_fetch *f);

/* ------------------------------------------------------------------ */
/* the cache: in memory, saved in the spool directory after each fetch
 * and loaded at the first use, so policies outlive a restart */

struct mtasts_cache;

struct mtasts_cache *mtasts_cache_new(void);
void mtasts_cache_free(struct mtasts_cache *c);
/*
 * mtasts_cache_get - the policy cached for domain while its max_age has
 * not run out at now, else NULL.  *refetch (may be NULL) is set to 1 when
 * a fetch is due: nothing usable cached, txt_id (NULL = not known) differs
 * from the cached id, or the entry is MTASTS_REFRESH old; else 0.  A
 * returned policy stays usable while the refetch is in progress or fails.
 */
const struct mtasts_policy *mtasts_cache_get(struct mtasts_cache *c,
                                             const char *domain,
                                             const char *txt_id, time_t now,
                                             int *refetch);
/* mtasts_cache_put - store (replace) the policy of domain with its id */
int mtasts_cache_put(struct mtasts_cache *c, const char *domain, const char *id,
                     const struct mtasts_policy *p, time_t now);
/* mtasts_cache_remove - forget domain (e.g. TXT record gone) */
void mtasts_cache_remove(struct mtasts_cache *c, const char *domain);
/*
 * mtasts_cache_save - write every entry to path (atomically: a temporary
 * file, fsync, rename); 0 or -1.  mtasts_cache_load - add the entries of
 * path still within max_age at now, each policy parsed again; returns how
 * many (0 when the file does not exist), -1 when it cannot be read.
 */
int mtasts_cache_save(const struct mtasts_cache *c, const char *path);
int mtasts_cache_load(struct mtasts_cache *c, const char *path, time_t now);

#endif
