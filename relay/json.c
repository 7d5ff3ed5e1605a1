/*
 * json.c - growable output buffer and JSON string escaping.  Used by the
 * control server to format listings, by the metrics endpoint for its
 * page, and by backmxctl.  Knows nothing about mail; never logs.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

void
json_buf_init(struct json_buf *b)
{
	memset(b, 0, sizeof(*b));
}

void
json_buf_free(struct json_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

void
json_buf_consume(struct json_buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		if (b->data != NULL)
			b->data[0] = '\0';
		return;
	}
	/* with the NUL that always follows the data */
	memmove(b->data, b->data + n, b->len - n + 1);
	b->len -= n;
}

/* json_buf_reserve - room for n more octets plus a NUL; 0 / -1 */
static int
json_buf_reserve(struct json_buf *b, size_t n)
{
	size_t cap;
	char *p;

	if (b->oom)
		return -1;
	if (b->len + n + 1 <= b->cap)
		return 0;
	if (n > SIZE_MAX / 2 - b->len) {
		b->oom = 1;
		return -1;
	}
	cap = b->cap ? b->cap : 256;
	while (cap < b->len + n + 1)
		cap *= 2;
	if ((p = realloc(b->data, cap)) == NULL) {
		b->oom = 1;
		return -1;
	}
	b->data = p;
	b->cap = cap;
	return 0;
}

void
json_buf_append(struct json_buf *b, const void *data, size_t len)
{
	if (json_buf_reserve(b, len) < 0)
		return;
	if (len > 0)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
}

void
json_buf_puts(struct json_buf *b, const char *s)
{
	json_buf_append(b, s, strlen(s));
}

void
json_buf_printf(struct json_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || json_buf_reserve(b, (size_t)n) < 0)
		return;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/*
 * json_utf8_len - length of the valid UTF-8 sequence at s (at most
 * left octets), or 0 when it is not one (overlong forms, surrogates and
 * code points above U+10FFFF are not valid, RFC 3629).
 */
static size_t
json_utf8_len(const unsigned char *s, size_t left)
{
	uint32_t cp;
	size_t n, i;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (n > left)
		return 0;
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

void
json_put_string(struct json_buf *b, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, n;

	json_buf_append(b, "\"", 1);
	while (i < len) {
		unsigned char c = p[i];

		if (c == '"' || c == '\\') {
			char esc[2] = {'\\', (char)c};

			json_buf_append(b, esc, 2);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			switch (c) {
			case '\n':
				json_buf_append(b, "\\n", 2);
				break;
			case '\r':
				json_buf_append(b, "\\r", 2);
				break;
			case '\t':
				json_buf_append(b, "\\t", 2);
				break;
			default:
				json_buf_printf(b, "\\u%04x", c);
				break;
			}
			i++;
		} else if ((n = json_utf8_len(p + i, len - i)) == 0) {
			json_buf_append(b, "\\ufffd", 6);
			i++;
		} else {
			json_buf_append(b, p + i, n);
			i += n;
		}
	}
	json_buf_append(b, "\"", 1);
}

void
json_put_cstring(struct json_buf *b, const char *s)
{
	if (s == NULL)
		json_buf_append(b, "null", 4);
	else
		json_put_string(b, s, strlen(s));
}

void
json_put_text(struct json_buf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t len = strlen(s), i = 0, n;

	while (i < len) {
		if ((p[i] < 0x20 && p[i] != '\t') || p[i] == 0x7f) {
			json_buf_append(b, "?", 1);
			i++;
		} else if ((n = json_utf8_len(p + i, len - i)) == 0) {
			json_buf_append(b, "\xef\xbf\xbd", 3);
			i++;
		} else {
			json_buf_append(b, p + i, n);
			i += n;
		}
	}
}
