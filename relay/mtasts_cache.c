/*
 * mtasts_cache.c - the MTA-STS policy cache: in memory, keyed by domain,
 * each entry with its TXT id and fetch time; saved to a file in the spool
 * directory after each fetch and loaded at the first use, so policies
 * outlive a restart (RFC 8461 5).  Called by fwd_tls.c; uses mtasts.c's
 * policy parser at load.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "mtasts.h"

/* ------------------------------------------------------------------ */
/* the cache: a small array, linear search; the domains are the
 * configured ones, so it stays small.  Past MTASTS_CACHE_MAX the oldest
 * entry is dropped. */

#define MTASTS_CACHE_MAX 4096

struct mtasts_cache_entry {
	char domain[MTASTS_NAME_MAX + 1];
	char id[MTASTS_ID_MAX + 1];
	time_t fetched;
	struct mtasts_policy policy;
};

struct mtasts_cache {
	struct mtasts_cache_entry *e;
	int n, cap;
};

struct mtasts_cache *
mtasts_cache_new(void)
{
	return calloc(1, sizeof(struct mtasts_cache));
}

void
mtasts_cache_free(struct mtasts_cache *c)
{
	if (c == NULL)
		return;
	free(c->e);
	free(c);
}

/* mtasts_cache_key - lower case, no trailing dot; -1 when too long */
static int
mtasts_cache_key(const char *domain, char *key)
{
	size_t n = strlen(domain);

	if (n > 0 && domain[n - 1] == '.')
		n--;
	if (n == 0 || n > MTASTS_NAME_MAX)
		return -1;
	for (size_t i = 0; i < n; i++)
		key[i] = tolower((unsigned char)domain[i]);
	key[n] = '\0';
	return 0;
}

static struct mtasts_cache_entry *
mtasts_cache_find(struct mtasts_cache *c, const char *key)
{
	for (int i = 0; i < c->n; i++)
		if (strcmp(c->e[i].domain, key) == 0)
			return &c->e[i];
	return NULL;
}

const struct mtasts_policy *
mtasts_cache_get(struct mtasts_cache *c, const char *domain, const char *txt_id,
                 time_t now, int *refetch)
{
	char key[MTASTS_NAME_MAX + 1];
	struct mtasts_cache_entry *e;
	int dummy;

	if (refetch == NULL)
		refetch = &dummy;
	*refetch = 1;
	if (c == NULL || mtasts_cache_key(domain, key) != 0 ||
	    (e = mtasts_cache_find(c, key)) == NULL)
		return NULL;
	if (now >= e->fetched + e->policy.max_age || now < e->fetched - 300)
		return NULL; /* expired (or the clock went back far) */
	*refetch = (txt_id != NULL && strcmp(txt_id, e->id) != 0) ||
	           now >= e->fetched + MTASTS_REFRESH;
	return &e->policy;
}

int
mtasts_cache_put(struct mtasts_cache *c, const char *domain, const char *id,
                 const struct mtasts_policy *p, time_t now)
{
	char key[MTASTS_NAME_MAX + 1];
	struct mtasts_cache_entry *e;

	if (mtasts_cache_key(domain, key) != 0 || id == NULL ||
	    strlen(id) > MTASTS_ID_MAX)
		return -1;
	if ((e = mtasts_cache_find(c, key)) == NULL) {
		if (c->n == MTASTS_CACHE_MAX) {
			int old = 0;

			for (int i = 1; i < c->n; i++)
				if (c->e[i].fetched < c->e[old].fetched)
					old = i;
			e = &c->e[old];
		} else {
			if (c->n == c->cap) {
				int cap = c->cap ? c->cap * 2 : 8;
				void *ne =
				    reallocarray(c->e, cap, sizeof(*c->e));

				if (ne == NULL)
					return -1;
				c->e = ne;
				c->cap = cap;
			}
			e = &c->e[c->n++];
		}
	}
	memcpy(e->domain, key, sizeof(key));
	snprintf(e->id, sizeof(e->id), "%s", id);
	e->fetched = now;
	e->policy = *p;
	return 0;
}

void
mtasts_cache_remove(struct mtasts_cache *c, const char *domain)
{
	char key[MTASTS_NAME_MAX + 1];
	struct mtasts_cache_entry *e;

	if (c == NULL || mtasts_cache_key(domain, key) != 0 ||
	    (e = mtasts_cache_find(c, key)) == NULL)
		return;
	*e = c->e[--c->n];
}

/*
 * The cache on disk (RFC 8461 5: a policy is kept for max_age, across
 * restarts too, so an attacker who blocks the fetch after a restart
 * cannot downgrade).  A text file, one entry after another:
 *
 *   domain ID FETCHED LEN\n  then LEN octets of the policy in RFC format
 *
 * Loading re-parses every policy with mtasts_parse_policy(), so a damaged
 * file loses entries, never trust.  Saving writes a temporary file,
 * fsyncs and renames it over the old one.
 */
int
mtasts_cache_save(const struct mtasts_cache *c, const char *path)
{
	char tmp[4096], text[MTASTS_MAX_MX * (MTASTS_NAME_MAX + 8) + 128];
	FILE *f;
	int fd, ok = 1;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -1;
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) <
	    0)
		return -1;
	if ((f = fdopen(fd, "w")) == NULL) {
		close(fd);
		unlink(tmp);
		return -1;
	}
	for (int i = 0; c != NULL && i < c->n; i++) {
		const struct mtasts_cache_entry *e = &c->e[i];
		size_t n = 0;

		n += (size_t)snprintf(text + n, sizeof(text) - n,
		                      "version: STSv1\nmode: %s\n",
		                      mtasts_mode_str(e->policy.mode));
		for (int j = 0; j < e->policy.nmx; j++)
			n += (size_t)snprintf(text + n, sizeof(text) - n,
			                      "mx: %s\n", e->policy.mx[j]);
		n += (size_t)snprintf(text + n, sizeof(text) - n,
		                      "max_age: %ld\n", e->policy.max_age);
		if (n >= sizeof(text))
			continue;
		if (fprintf(f, "%s %s %lld %zu\n", e->domain, e->id,
		            (long long)e->fetched, n) < 0 ||
		    fwrite(text, 1, n, f) != n)
			ok = 0;
	}
	if (fflush(f) != 0 || fsync(fileno(f)) != 0)
		ok = 0;
	if (fclose(f) != 0)
		ok = 0;
	if (!ok || rename(tmp, path) != 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

int
mtasts_cache_load(struct mtasts_cache *c, const char *path, time_t now)
{
	char line[512], domain[MTASTS_NAME_MAX + 2], id[MTASTS_ID_MAX + 2];
	char *text = NULL, err[128];
	long long fetched;
	size_t len;
	FILE *f;
	int n = 0;

	if ((f = fopen(path, "re")) == NULL)
		return errno == ENOENT ? 0 : -1;
	if ((text = malloc(MTASTS_BODY_MAX)) == NULL) {
		fclose(f);
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		struct mtasts_policy p;

		if (sscanf(line, "%254s %33s %lld %zu", domain, id, &fetched,
		           &len) != 4 ||
		    len == 0 || len > MTASTS_BODY_MAX ||
		    strlen(id) > MTASTS_ID_MAX || fread(text, 1, len, f) != len)
			break; /* out of step: the rest cannot be trusted */
		if (mtasts_parse_policy(text, len, &p, err, sizeof(err)) != 0 ||
		    fetched > (long long)now + 300 ||
		    (long long)now >= fetched + p.max_age)
			continue; /* damaged or expired: skip it */
		if (mtasts_cache_put(c, domain, id, &p, (time_t)fetched) == 0)
			n++;
	}
	free(text);
	fclose(f);
	return n;
}
