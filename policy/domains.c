/*
 * domains.c - the domain table (struct policy) and recipient sets.
 *
 * relay/config.c builds the table with policy_new/policy_add_domain and
 * loads each domain's recipient file with policy_domain_load_recipients;
 * rcpt_gate.c asks policy_find_domain and policy_domain_has_rcpt for every
 * RCPT.  Both lookups are hash tables, so a million recipients cost one
 * probe each.  Nothing here logs: errors come back as "FILE:LINE: text".
 */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

/* ------------------------------------------------------------------ */
/* hashing */

/* policy_hash - FNV-1a over a NUL-terminated string */
static uint32_t
policy_hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

/* policy_name_norm - lowercase copy of a domain name without a final dot */
static int
policy_name_norm(const char *name, char *out, size_t outlen)
{
	size_t n = strlen(name);

	if (n > 0 && name[n - 1] == '.')
		n--;
	if (n == 0 || n >= outlen)
		return -1;
	for (size_t i = 0; i < n; i++)
		out[i] = tolower((unsigned char)name[i]);
	out[n] = '\0';
	return 0;
}

int
policy_addr_domain_lc(const char *address, char *out)
{
	const char *at = address != NULL ? strrchr(address, '@') : NULL;
	size_t k;

	if (at == NULL || strlen(at + 1) > POLICY_DOMAIN_MAX)
		return -1;
	for (k = 0; at[1 + k] != '\0'; k++)
		out[k] = (char)tolower((unsigned char)at[1 + k]);
	out[k] = '\0';
	return 0;
}

/* ------------------------------------------------------------------ */
/* recipient sets: open addressing over strings kept in an arena */

struct rcpt_chunk {
	struct rcpt_chunk *next;
	size_t used, size;
	char data[];
};

struct policy_rcptset {
	char **slots;
	uint32_t *hashes;
	size_t cap; /* power of two */
	size_t count;
	int whole; /* "@domain": every local part */
	struct rcpt_chunk *chunks;
};

#define RCPT_CHUNK_SIZE (1024 * 1024)

static struct policy_rcptset *
rcptset_new(void)
{
	struct policy_rcptset *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->cap = 64;
	s->slots = calloc(s->cap, sizeof(*s->slots));
	s->hashes = calloc(s->cap, sizeof(*s->hashes));
	if (s->slots == NULL || s->hashes == NULL) {
		free(s->slots);
		free(s->hashes);
		free(s);
		return NULL;
	}
	return s;
}

static void
rcptset_free(struct policy_rcptset *s)
{
	struct rcpt_chunk *c, *next;

	if (s == NULL)
		return;
	for (c = s->chunks; c != NULL; c = next) {
		next = c->next;
		free(c);
	}
	free(s->slots);
	free(s->hashes);
	free(s);
}

/* rcptset_copy - keep a string in the arena */
static char *
rcptset_copy(struct policy_rcptset *s, const char *key, size_t len)
{
	struct rcpt_chunk *c = s->chunks;
	char *p;

	if (c == NULL || c->size - c->used < len + 1) {
		size_t size =
		    len + 1 > RCPT_CHUNK_SIZE ? len + 1 : RCPT_CHUNK_SIZE;

		c = malloc(sizeof(*c) + size);
		if (c == NULL)
			return NULL;
		c->next = s->chunks;
		c->used = 0;
		c->size = size;
		s->chunks = c;
	}
	p = c->data + c->used;
	memcpy(p, key, len + 1);
	c->used += len + 1;
	return p;
}

static int
rcptset_grow(struct policy_rcptset *s)
{
	size_t ncap = s->cap * 2, i, j;
	char **nslots = calloc(ncap, sizeof(*nslots));
	uint32_t *nhashes = calloc(ncap, sizeof(*nhashes));

	if (nslots == NULL || nhashes == NULL) {
		free(nslots);
		free(nhashes);
		return -1;
	}
	for (i = 0; i < s->cap; i++) {
		if (s->slots[i] == NULL)
			continue;
		for (j = s->hashes[i] & (ncap - 1); nslots[j] != NULL;
		     j = (j + 1) & (ncap - 1))
			;
		nslots[j] = s->slots[i];
		nhashes[j] = s->hashes[i];
	}
	free(s->slots);
	free(s->hashes);
	s->slots = nslots;
	s->hashes = nhashes;
	s->cap = ncap;
	return 0;
}

static int
rcptset_has(const struct policy_rcptset *s, const char *key)
{
	uint32_t h = policy_hash(key);
	size_t i;

	for (i = h & (s->cap - 1); s->slots[i] != NULL;
	     i = (i + 1) & (s->cap - 1))
		if (s->hashes[i] == h && strcmp(s->slots[i], key) == 0)
			return 1;
	return 0;
}

/* rcptset_add - 0 added or already there, -1 out of memory */
static int
rcptset_add(struct policy_rcptset *s, const char *key)
{
	uint32_t h = policy_hash(key);
	size_t i;
	char *copy;

	/* keep the load under 1/2: probes stay short */
	if ((s->count + 1) * 2 > s->cap && rcptset_grow(s) < 0)
		return -1;
	for (i = h & (s->cap - 1); s->slots[i] != NULL;
	     i = (i + 1) & (s->cap - 1))
		if (s->hashes[i] == h && strcmp(s->slots[i], key) == 0)
			return 0;
	if ((copy = rcptset_copy(s, key, strlen(key))) == NULL)
		return -1;
	s->slots[i] = copy;
	s->hashes[i] = h;
	s->count++;
	return 0;
}

/* ------------------------------------------------------------------ */
/* the domain table */

struct policy_index {
	struct policy_domain **slots;
	size_t cap;
};

struct policy *
policy_new(const char *hostname)
{
	struct policy *p = calloc(1, sizeof(*p));
	struct policy_index *ix;

	if (p == NULL)
		return NULL;
	if (hostname != NULL &&
	    policy_name_norm(hostname, p->hostname, sizeof(p->hostname)) < 0)
		p->hostname[0] = '\0';
	ix = calloc(1, sizeof(*ix));
	if (ix == NULL) {
		free(p);
		return NULL;
	}
	ix->cap = 16;
	ix->slots = calloc(ix->cap, sizeof(*ix->slots));
	if (ix->slots == NULL) {
		free(ix);
		free(p);
		return NULL;
	}
	p->index = ix;
	return p;
}

void
policy_free(struct policy *p)
{
	struct policy_index *ix;
	int i;

	if (p == NULL)
		return;
	for (i = 0; i < p->ndomains; i++) {
		free(p->domains[i]->recipients_file);
		for (int k = 0; k < p->domains[i]->nsrcs; k++)
			free(p->domains[i]->srcs[k].path);
		free(p->domains[i]->srcs);
		rcptset_free(p->domains[i]->rcpts);
		free(p->domains[i]);
	}
	free(p->domains);
	for (i = 0; i < p->naliases; i++)
		free(p->aliases[i]);
	free(p->aliases);
	if ((ix = p->index) != NULL) {
		free(ix->slots);
		free(ix);
	}
	free(p);
}

int
policy_add_alias(struct policy *p, const char *name)
{
	char norm[POLICY_DOMAIN_MAX + 1], *copy, **na;

	if (p == NULL || name == NULL ||
	    policy_name_norm(name, norm, sizeof(norm)) < 0)
		return -1;
	if (policy_is_own_name(p, norm) && strcmp(p->hostname, norm) != 0)
		return 0;
	if ((copy = strdup(norm)) == NULL)
		return -1;
	na = realloc(p->aliases, (p->naliases + 1) * sizeof(*na));
	if (na == NULL) {
		free(copy);
		return -1;
	}
	p->aliases = na;
	p->aliases[p->naliases++] = copy;
	return 0;
}

int
policy_is_own_name(const struct policy *p, const char *name)
{
	char norm[POLICY_DOMAIN_MAX + 1];

	if (p == NULL || name == NULL ||
	    policy_name_norm(name, norm, sizeof(norm)) < 0)
		return 0;
	if (p->hostname[0] != '\0' && strcasecmp(p->hostname, norm) == 0)
		return 1;
	for (int i = 0; i < p->naliases; i++)
		if (strcmp(p->aliases[i], norm) == 0)
			return 1;
	return 0;
}

/* policy_index_put - insert d; the caller made sure the name is new */
static int
policy_index_put(struct policy_index *ix, struct policy_domain *d)
{
	size_t i;

	for (i = policy_hash(d->name) & (ix->cap - 1); ix->slots[i] != NULL;
	     i = (i + 1) & (ix->cap - 1))
		;
	ix->slots[i] = d;
	return 0;
}

static int
policy_index_grow(struct policy *p)
{
	struct policy_index *ix = p->index;
	struct policy_domain **old = ix->slots;
	size_t oldcap = ix->cap;

	ix->slots = calloc(oldcap * 2, sizeof(*ix->slots));
	if (ix->slots == NULL) {
		ix->slots = old;
		return -1;
	}
	ix->cap = oldcap * 2;
	for (size_t i = 0; i < oldcap; i++)
		if (old[i] != NULL)
			policy_index_put(ix, old[i]);
	free(old);
	return 0;
}

struct policy_domain *
policy_find_domain(const struct policy *p, const char *name)
{
	char norm[POLICY_DOMAIN_MAX + 1];
	struct policy_index *ix;
	size_t i;

	if (p == NULL || name == NULL || (ix = p->index) == NULL ||
	    policy_name_norm(name, norm, sizeof(norm)) < 0)
		return NULL;
	for (i = policy_hash(norm) & (ix->cap - 1); ix->slots[i] != NULL;
	     i = (i + 1) & (ix->cap - 1))
		if (strcmp(ix->slots[i]->name, norm) == 0)
			return ix->slots[i];
	return NULL;
}

struct policy_domain *
policy_add_domain(struct policy *p, const char *name)
{
	struct policy_index *ix;
	struct policy_domain *d, **nd;

	if (p == NULL || name == NULL || (ix = p->index) == NULL)
		return NULL;
	if (policy_find_domain(p, name) != NULL)
		return NULL;
	if ((size_t)(p->ndomains + 1) * 2 > ix->cap && policy_index_grow(p) < 0)
		return NULL;
	if ((d = calloc(1, sizeof(*d))) == NULL)
		return NULL;
	if (policy_name_norm(name, d->name, sizeof(d->name)) < 0) {
		free(d);
		return NULL;
	}
	d->route_port = 25;
	d->tls = POLICY_TLS_MAY;
	d->verify_pos_ttl = 30 * 86400;
	d->verify_neg_ttl = 3600;
	nd = realloc(p->domains, (p->ndomains + 1) * sizeof(*nd));
	if (nd == NULL) {
		free(d);
		return NULL;
	}
	p->domains = nd;
	p->domains[p->ndomains++] = d;
	policy_index_put(ix, d);
	return d;
}

/* ------------------------------------------------------------------ */
/* recipient files */

/* rcpt_trim - strip blanks, CR and a "#" comment; returns the entry */
static char *
rcpt_trim(char *line)
{
	char *s = line, *e;

	while (*s == ' ' || *s == '\t')
		s++;
	/* "#" is legal in a local part: a comment starts a line or follows
	 * a blank */
	for (e = s; *e; e++)
		if (*e == '#' && (e == s || e[-1] == ' ' || e[-1] == '\t')) {
			*e = '\0';
			break;
		}
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' ||
	                 e[-1] == '\n'))
		*--e = '\0';
	return s;
}

/* rcpt_last_at - the "@" that separates local part and domain (outside
 * quotes), or NULL */
static char *
rcpt_last_at(char *s)
{
	char *at = NULL;
	int q = 0;

	for (; *s; s++) {
		if (q && *s == '\\' && s[1] != '\0')
			s++;
		else if (*s == '"')
			q = !q;
		else if (!q && *s == '@')
			at = s;
	}
	return at;
}

/* rcpt_domain_ok - LDH labels, 1..63 each; non-ASCII allowed (U-labels) */
static int
rcpt_domain_ok(const char *s)
{
	size_t label = 0, n = 0;

	for (; *s; s++, n++) {
		unsigned char c = *s;

		if (c == '.') {
			if (label == 0)
				return 0;
			label = 0;
			continue;
		}
		if (!(isalnum(c) || c == '-' || c >= 0x80))
			return 0;
		if (++label > 63)
			return 0;
	}
	return n > 0 && n <= POLICY_DOMAIN_MAX;
}

/* rcpt_entry - one trimmed entry into set s of domain d */
static const char *
rcpt_entry(const struct policy_domain *d, struct policy_rcptset *s, char *e)
{
	char key[POLICY_LOCAL_MAX * 2 + 3], dom[POLICY_DOMAIN_MAX + 1];
	char *at;

	for (char *c = e; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			return "control character in entry";
	at = rcpt_last_at(e);
	if (at != NULL) {
		*at = '\0';
		if (!rcpt_domain_ok(at + 1) ||
		    policy_name_norm(at + 1, dom, sizeof(dom)) < 0)
			return "bad domain in entry";
		/* "local@domain" and "@domain" count only for that domain */
		if (strcmp(dom, d->name) != 0) {
			if (*e != '\0' &&
			    policy_local_canon(e, key, sizeof(key)) < 0)
				return "bad local part (expected local, "
				       "local@domain or @domain)";
			return NULL;
		}
		if (*e == '\0') {
			s->whole = 1;
			return NULL;
		}
	}
	if (strchr(e, ' ') != NULL || strchr(e, '\t') != NULL) {
		/* blanks are only legal inside quotes */
		if (e[0] != '"')
			return "blank inside entry (expected local, "
			       "local@domain or @domain)";
	}
	if (policy_local_canon(e, key, sizeof(key)) < 0)
		return "bad local part (expected local, local@domain or "
		       "@domain)";
	if (rcptset_add(s, key) < 0)
		return "out of memory";
	return NULL;
}

/* rcpt_load_file - read one list file into s */
static int
rcpt_load_file(const struct policy_domain *d, struct policy_rcptset *s,
               const char *path, char *err, size_t errlen)
{
	const char *msg;
	char *line = NULL, *e;
	size_t cap = 0;
	ssize_t n;
	FILE *fp;
	int lineno = 0;

	if ((fp = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "%s:0: cannot open: %s", path,
		         strerror(errno));
		return -1;
	}
	while ((n = getline(&line, &cap, fp)) != -1) {
		lineno++;
		if (memchr(line, '\0', n) != NULL) {
			msg = "NUL octet in line";
			goto fail;
		}
		e = rcpt_trim(line);
		if (*e == '\0')
			continue;
		if ((msg = rcpt_entry(d, s, e)) != NULL)
			goto fail;
	}
	if (ferror(fp)) {
		snprintf(err, errlen, "%s:%d: read error: %s", path, lineno,
		         strerror(errno));
		goto fail_quiet;
	}
	free(line);
	fclose(fp);
	return 0;

fail:
	snprintf(err, errlen, "%s:%d: %s", path, lineno, msg);
fail_quiet:
	free(line);
	fclose(fp);
	return -1;
}

int
policy_domain_load_recipients(struct policy_domain *d, char *err, size_t errlen)
{
	struct policy_rcptset *s;
	int i, nfiles = 0;

	if (errlen > 0)
		err[0] = '\0';
	if (d == NULL || d->recipients_file == NULL) {
		snprintf(err, errlen, "(none):0: no recipients file");
		return -1;
	}
	if ((s = rcptset_new()) == NULL) {
		snprintf(err, errlen, "%s:0: out of memory",
		         d->recipients_file);
		return -1;
	}
	/* every file source feeds the one set: "any says yes" is a union */
	for (i = 0; i < d->nsrcs; i++) {
		if (d->srcs[i].kind != POLICY_SRC_FILE)
			continue;
		nfiles++;
		if (rcpt_load_file(d, s, d->srcs[i].path, err, errlen) < 0)
			goto fail;
	}
	if (nfiles == 0 &&
	    rcpt_load_file(d, s, d->recipients_file, err, errlen) < 0)
		goto fail;
	/* swap only a complete new set: a bad reload keeps the old one */
	rcptset_free(d->rcpts);
	d->rcpts = s;
	return 0;
fail:
	rcptset_free(s);
	return -1;
}

size_t
policy_domain_nrcpts(const struct policy_domain *d)
{
	if (d == NULL || d->rcpts == NULL)
		return 0;
	return d->rcpts->count + (d->rcpts->whole ? 1 : 0);
}

int
policy_domain_has_rcpt(const struct policy_domain *d, const char *local)
{
	char key[POLICY_LOCAL_MAX * 2 + 3];

	if (d == NULL || local == NULL ||
	    policy_local_canon(local, key, sizeof(key)) < 0)
		return 0;
	/* RFC 5321 4.5.1: every served domain takes postmaster */
	if (strcmp(key, "postmaster") == 0)
		return 1;
	if (d->recipients_any)
		return 1;
	if (d->rcpts == NULL)
		return 0;
	return d->rcpts->whole || rcptset_has(d->rcpts, key);
}
