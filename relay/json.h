/*
 * json.h - a growable output buffer and JSON string escaping, shared by
 * the control server (control.c), the metrics endpoint (metrics.c) and
 * backmxctl.  No parsing: backmx only ever writes JSON.
 *
 * Ownership: a json_buf owns its bytes; json_buf_free() releases them.
 * Allocation failure is sticky: the buffer sets `oom`, later appends do
 * nothing, and the caller checks `oom` once at the end.
 */
#ifndef BACKMX_JSON_H
#define BACKMX_JSON_H

#include <stddef.h>

struct json_buf {
	char *data;
	size_t len;
	size_t cap;
	int oom;
};

void json_buf_init(struct json_buf *b);
void json_buf_free(struct json_buf *b);
/* json_buf_consume - drop the first n bytes (after a partial write) */
void json_buf_consume(struct json_buf *b, size_t n);
void json_buf_append(struct json_buf *b, const void *data, size_t len);
void json_buf_puts(struct json_buf *b, const char *s);
void json_buf_printf(struct json_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * json_put_string - s (len octets) as a quoted JSON string: '"' '\\' and
 * control characters escaped, valid UTF-8 kept, every octet of an invalid
 * UTF-8 sequence replaced by U+FFFD, so the output is always valid JSON.
 * json_put_cstring - the same for a C string; NULL gives `null`.
 */
void json_put_string(struct json_buf *b, const char *s, size_t len);
void json_put_cstring(struct json_buf *b, const char *s);

/*
 * json_put_text - s with control characters but TAB and invalid UTF-8
 * replaced ('?' and U+FFFD), for human-readable one-line output of peer text.
 */
void json_put_text(struct json_buf *b, const char *s);

#endif
