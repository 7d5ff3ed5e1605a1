/*
 * jsonw.h - a growable output buffer with JSON string escaping, shared by
 * the control server (ctl.c), the metrics endpoint (prom.c) and backmxctl
 * (ctl_client.c).  Write-only: backmx never parses JSON.
 *
 * Ownership: a struct jsonw owns its octets; jsonw_free() releases them.
 * Running out of memory is sticky: `oom` is set, later writes do nothing,
 * and the caller checks `oom` once when it is done.
 */
#ifndef BACKMX_JSONW_H
#define BACKMX_JSONW_H

#include <stddef.h>

struct jsonw {
	char *buf;		/* NUL-terminated when len > 0 */
	size_t len;
	size_t size;
	int oom;
};

void jsonw_init(struct jsonw *w);
void jsonw_free(struct jsonw *w);
/* jsonw_drop - forget the first n octets (after a partial write) */
void jsonw_drop(struct jsonw *w, size_t n);
void jsonw_add(struct jsonw *w, const void *p, size_t n);
void jsonw_adds(struct jsonw *w, const char *s);
void jsonw_addf(struct jsonw *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * jsonw_str - s (n octets) as a JSON string with its quotes: '"', '\\'
 * and every control character escaped, valid UTF-8 copied, each octet of
 * an invalid UTF-8 sequence replaced by \ufffd: the result is always
 * valid JSON whatever s holds (NULs included).
 * jsonw_cstr - the same for a C string; NULL writes `null`.
 */
void jsonw_str(struct jsonw *w, const char *s, size_t n);
void jsonw_cstr(struct jsonw *w, const char *s);

/*
 * jsonw_text - s for a human reader on one line: control characters (TAB
 * kept) become '?', invalid UTF-8 becomes U+FFFD; no quotes.  NULL "-".
 */
void jsonw_text(struct jsonw *w, const char *s);
/* jsonw_textn - the same for n octets (NULs become '?') */
void jsonw_textn(struct jsonw *w, const char *s, size_t n);

/* jsonw_utf8 - octets of the valid UTF-8 character at s (n left), or 0 */
size_t jsonw_utf8(const unsigned char *s, size_t n);

#endif
