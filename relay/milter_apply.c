/*
 * milter_apply.c - write a message with the milters' header
 * modifications and body replacement applied (milter.h): into the spool
 * (milter_apply), or into a file for the next milter of a chain
 * (milter_apply_file, so that it sees the edits of those before it).
 *
 * Called by smtpd_milter.c once the milters answered and by milter.c
 * between two milters; reads the message from its temporary file, holds
 * only the header in memory (bounded), streams the body.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "milter.h"
#include "spool.h"

#define MILTER_APPLY_HDRS_MAX (1024 * 1024)

struct apply_hdrs {
	char **f; /* raw fields, CRLF kept, continuation lines in */
	int n, cap;
};

static int
apply_push(struct apply_hdrs *h, int at, char *field)
{
	if (field == NULL)
		return -1;
	if (h->n == h->cap) {
		int cap = h->cap ? h->cap * 2 : 32;
		char **p = realloc(h->f, cap * sizeof(*p));

		if (p == NULL) {
			free(field);
			return -1;
		}
		h->f = p;
		h->cap = cap;
	}
	if (at < 0 || at > h->n)
		at = h->n;
	memmove(h->f + at + 1, h->f + at, (h->n - at) * sizeof(*h->f));
	h->f[at] = field;
	h->n++;
	return 0;
}

/* apply_field - "name: value\r\n", a bare LF in value becoming CRLF */
static char *
apply_field(const char *name, const char *value)
{
	size_t n = strlen(name), v = strlen(value), o = 0;
	char *f = malloc(n + 2 * v + 5);

	if (f == NULL)
		return NULL;
	memcpy(f, name, n);
	o = n;
	f[o++] = ':';
	if (*value != ' ' && *value != '\t')
		f[o++] = ' ';
	for (size_t i = 0; i < v; i++) {
		if (value[i] == '\r')
			continue;
		if (value[i] == '\n')
			f[o++] = '\r';
		f[o++] = value[i];
	}
	f[o++] = '\r';
	f[o++] = '\n';
	f[o] = '\0';
	return f;
}

static int
apply_name_is(const char *field, const char *name)
{
	size_t n = strlen(name);

	return strncasecmp(field, name, n) == 0 &&
	       (field[n] == ':' || field[n] == ' ' || field[n] == '\t');
}

typedef int (*apply_put_fn)(void *arg, const void *p, size_t n);

static int
apply_put_spool(void *arg, const void *p, size_t n)
{
	return spool_writer_append(arg, p, n);
}

static int
apply_put_file(void *arg, const void *p, size_t n)
{
	return fwrite(p, 1, n, arg) == n ? 0 : -1;
}

static int
apply_to(const struct milter_result *res, FILE *data, apply_put_fn put, void *w,
         uint64_t *size)
{
	struct apply_hdrs h = {0};
	char line[2048], buf[65536];
	long body_off = 0;
	size_t total = 0, n;
	int rc = -1;

	rewind(data);
	/* the header, as raw fields */
	for (;;) {
		long pos = ftell(data);

		if (fgets(line, sizeof(line), data) == NULL) {
			body_off = ftell(data);
			break;
		}
		size_t l = strlen(line);

		if (!strcmp(line, "\r\n") || !strcmp(line, "\n")) {
			body_off = pos; /* the blank line is kept */
			break;
		}
		if ((line[0] == ' ' || line[0] == '\t') && h.n > 0) {
			size_t ol = strlen(h.f[h.n - 1]);
			char *p = realloc(h.f[h.n - 1], ol + l + 1);

			if (p == NULL)
				goto out;
			memcpy(p + ol, line, l + 1);
			h.f[h.n - 1] = p;
		} else if (strchr(line, ':') == NULL ||
		           total + l > MILTER_APPLY_HDRS_MAX) {
			body_off = pos;
			break;
		} else if (apply_push(&h, -1, strdup(line)) < 0)
			goto out;
		total += l;
	}
	for (const struct milter_mod *m = res->mods; m != NULL; m = m->next) {
		switch (m->kind) {
		case MILTER_MOD_ADDHDR:
			if (apply_push(&h, -1, apply_field(m->name, m->value)) <
			    0)
				goto out;
			break;
		case MILTER_MOD_INSHDR:
			if (apply_push(&h,
			               m->index > (uint32_t)h.n ? h.n
			                                        : (int)m->index,
			               apply_field(m->name, m->value)) < 0)
				goto out;
			break;
		case MILTER_MOD_CHGHDR: {
			uint32_t k = 0;
			int i;

			for (i = 0; i < h.n; i++)
				if (apply_name_is(h.f[i], m->name) &&
				    ++k == (m->index ? m->index : 1))
					break;
			if (i == h.n) {
				/* no such field: adding it is what Postfix does
				 */
				if (m->value[0] != '\0' &&
				    apply_push(&h, -1,
				               apply_field(m->name, m->value)) <
				        0)
					goto out;
				break;
			}
			free(h.f[i]);
			if (m->value[0] == '\0') {
				memmove(h.f + i, h.f + i + 1,
				        (h.n - i - 1) * sizeof(*h.f));
				h.n--;
			} else if ((h.f[i] = apply_field(m->name, m->value)) ==
			           NULL) {
				memmove(h.f + i, h.f + i + 1,
				        (h.n - i - 1) * sizeof(*h.f));
				h.n--;
				goto out;
			}
			break;
		}
		default:
			break; /* recipients: smtpd.c */
		}
	}
	for (int i = 0; i < h.n; i++) {
		size_t l = strlen(h.f[i]);

		if (put(w, h.f[i], l) < 0)
			goto out;
		*size += l;
	}
	if (res->body != NULL) {
		if (put(w, "\r\n", 2) < 0)
			goto out;
		*size += 2;
		rewind(res->body);
		data = res->body;
	} else if (fseek(data, body_off, SEEK_SET) < 0)
		goto out;
	if (res->body != NULL) {
		/* a milter's body: line ends made CRLF, so nothing stored can
		 * smuggle a bare CR or LF downstream */
		char ob[2 * sizeof(buf) / 2 + 2];
		int cr = 0;

		while ((n = fread(buf, 1, sizeof(buf) / 2, data)) > 0) {
			size_t o = 0;

			for (size_t i = 0; i < n; i++) {
				char c = buf[i];

				if (cr && c != '\n') {
					ob[o++] = '\n';
				}
				if (c == '\n' && !cr)
					ob[o++] = '\r';
				ob[o++] = c;
				cr = c == '\r';
			}
			if (put(w, ob, o) < 0)
				goto out;
			*size += o;
		}
		if (cr) {
			if (put(w, "\n", 1) < 0)
				goto out;
			*size += 1;
		}
	} else
		while ((n = fread(buf, 1, sizeof(buf), data)) > 0) {
			if (put(w, buf, n) < 0)
				goto out;
			*size += n;
		}
	rc = ferror(data) ? -1 : 0;
out:
	for (int i = 0; i < h.n; i++)
		free(h.f[i]);
	free(h.f);
	return rc;
}

int
milter_apply(const struct milter_result *res, FILE *data,
             struct spool_writer *w, uint64_t *size)
{
	return apply_to(res, data, apply_put_spool, w, size);
}

FILE *
milter_apply_file(const struct milter_result *res, FILE *data)
{
	FILE *out = tmpfile();
	uint64_t size = 0;

	if (out == NULL)
		return NULL;
	if (apply_to(res, data, apply_put_file, out, &size) < 0 ||
	    fflush(out) != 0) {
		fclose(out);
		return NULL;
	}
	rewind(out);
	return out;
}
