/*
 * jsonw.c - growable output buffer and JSON string escaping (RFC 8259).
 * Called by the control server and the metrics page in backmxd and by
 * backmxctl; knows nothing about mail, never logs, calls only libc.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonw.h"

void
jsonw_init(struct jsonw *w)
{
	w->buf = NULL;
	w->len = w->size = 0;
	w->oom = 0;
}

void
jsonw_free(struct jsonw *w)
{
	free(w->buf);
	jsonw_init(w);
}

void
jsonw_drop(struct jsonw *w, size_t n)
{
	if (n >= w->len) {
		w->len = 0;
		if (w->buf != NULL)
			w->buf[0] = '\0';
		return;
	}
	memmove(w->buf, w->buf + n, w->len - n + 1);
	w->len -= n;
}

/* jsonw_grow - room for n more octets and a NUL; 0, or -1 (oom set) */
static int
jsonw_grow(struct jsonw *w, size_t n)
{
	size_t want, size;
	char *p;

	if (w->oom)
		return -1;
	if (n >= SIZE_MAX / 4 - w->len) {
		w->oom = 1;
		return -1;
	}
	want = w->len + n + 1;
	if (want <= w->size)
		return 0;
	for (size = w->size ? w->size : 512; size < want; size *= 2)
		;
	if ((p = realloc(w->buf, size)) == NULL) {
		w->oom = 1;
		return -1;
	}
	w->buf = p;
	w->size = size;
	return 0;
}

void
jsonw_add(struct jsonw *w, const void *p, size_t n)
{
	if (jsonw_grow(w, n) < 0)
		return;
	if (n > 0)
		memcpy(w->buf + w->len, p, n);
	w->len += n;
	w->buf[w->len] = '\0';
}

void
jsonw_adds(struct jsonw *w, const char *s)
{
	jsonw_add(w, s, strlen(s));
}

void
jsonw_addf(struct jsonw *w, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || jsonw_grow(w, (size_t)n) < 0)
		return;
	va_start(ap, fmt);
	vsnprintf(w->buf + w->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	w->len += (size_t)n;
}

size_t
jsonw_utf8(const unsigned char *s, size_t n)
{
	size_t need, k;
	uint32_t cp, min;

	if (n == 0)
		return 0;
	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0) {
		need = 2, cp = s[0] & 0x1f, min = 0x80;
	} else if ((s[0] & 0xf0) == 0xe0) {
		need = 3, cp = s[0] & 0x0f, min = 0x800;
	} else if ((s[0] & 0xf8) == 0xf0) {
		need = 4, cp = s[0] & 0x07, min = 0x10000;
	} else
		return 0;
	if (need > n)
		return 0;
	for (k = 1; k < need; k++) {
		if ((s[k] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[k] & 0x3f);
	}
	/* overlong forms, UTF-16 surrogates, beyond U+10FFFF: RFC 3629 */
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return need;
}

void
jsonw_str(struct jsonw *w, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, k, run;

	jsonw_add(w, "\"", 1);
	while (i < n) {
		/* copy the longest run needing no escape in one go */
		for (run = i; run < n && p[run] >= 0x20 && p[run] < 0x7f &&
			      p[run] != '"' && p[run] != '\\';
		     run++)
			;
		if (run > i) {
			jsonw_add(w, p + i, run - i);
			i = run;
			continue;
		}
		switch (p[i]) {
		case '"':
			jsonw_add(w, "\\\"", 2);
			break;
		case '\\':
			jsonw_add(w, "\\\\", 2);
			break;
		case '\n':
			jsonw_add(w, "\\n", 2);
			break;
		case '\r':
			jsonw_add(w, "\\r", 2);
			break;
		case '\t':
			jsonw_add(w, "\\t", 2);
			break;
		default:
			if (p[i] < 0x20 || p[i] == 0x7f) {
				jsonw_addf(w, "\\u%04x", p[i]);
			} else if ((k = jsonw_utf8(p + i, n - i)) > 0) {
				jsonw_add(w, p + i, k);
				i += k;
				continue;
			} else
				jsonw_add(w, "\\ufffd", 6);
		}
		i++;
	}
	jsonw_add(w, "\"", 1);
}

void
jsonw_cstr(struct jsonw *w, const char *s)
{
	if (s == NULL)
		jsonw_add(w, "null", 4);
	else
		jsonw_str(w, s, strlen(s));
}

void
jsonw_textn(struct jsonw *w, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, k;

	while (i < n) {
		if ((p[i] < 0x20 && p[i] != '\t') || p[i] == 0x7f) {
			jsonw_add(w, "?", 1);
			i++;
		} else if ((k = jsonw_utf8(p + i, n - i)) == 0) {
			jsonw_add(w, "\xef\xbf\xbd", 3);
			i++;
		} else {
			jsonw_add(w, p + i, k);
			i += k;
		}
	}
}

void
jsonw_text(struct jsonw *w, const char *s)
{
	if (s == NULL)
		jsonw_add(w, "-", 1);
	else
		jsonw_textn(w, s, strlen(s));
}
