/*
 * rcpt_verify.c - asking a domain's recipient sources in order and
 * deciding (see rcpt_verify.h).  One struct rcpt_verify per pending
 * RCPT: it walks d->srcs, consults the cache (spool/verify.c) before
 * each LDAP lookup or callout, keeps what every source said, and hands
 * that to policy_rcpt_decide.  accept_when primary-down is checked
 * first: a primary known (or probed) to answer SMTP means 451 4.7.1.
 *
 * Called by smtpd_cmd.c (RCPT) and control.c (backmxctl verify); calls
 * callout.c, ldap_src.c, spool_verify_*, policy_rcpt_decide.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backmxd.h"
#include "callout.h"
#include "ldap_src.h"
#include "log.h"
#include "rcpt_verify.h"

#define LDAP_CACHE_FRESH 300 /* an LDAP answer is asked again after */
#define EXPIRE_EVERY 3600.

struct rcpt_verify {
	const struct policy_domain *d;
	char address[POLICY_PATH_MAX + 8];
	int listed;
	int src; /* next source to ask */
	int health_done;
	int nocache; /* backmxctl verify --now */
	struct policy_rcpt_answers a;
	char no_text[SPOOL_VERIFY_TEXT_MAX];
	struct callout_req *co;
	struct ldap_src_req *lq;
	ev_timer defer; /* a decision made in start, reported
	                   from the loop (ctl only) */
	rcpt_verify_cb cb;
	void *arg;
	/* what each source said, for backmxctl verify */
	void (*trace)(void *, const char *);
	void *trace_arg;
};

static struct spool_verify *rv_cache;
static ev_timer rv_expire;

/* ------------------------------------------------------------------ */
/* the cache */

static void
rv_key(char *key, size_t len, const char *prefix, const char *address)
{
	size_t i, n;

	n = (size_t)snprintf(key, len, "%s%s", prefix, address);
	for (i = 0; i < n && i < len; i++)
		key[i] = (char)tolower((unsigned char)key[i]);
}

/* rv_ldap_key - an LDAP answer's key: the definition in use, then the
 * address (a changed ldap:FILE starts with an empty cache) */
static void
rv_ldap_key(char *key, size_t len, const char *file, const char *address)
{
	char prefix[24];

	snprintf(prefix, sizeof(prefix),
	         "l%08lx:", ldap_src_definition_id(file));
	rv_key(key, len, prefix, address);
}

static void
rv_expire_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	int n = spool_verify_expire(rv_cache, (int64_t)time(NULL));

	if (n > 0)
		log_info("verify cache: %d expired entr%s removed", n,
		         n == 1 ? "y" : "ies");
}

/* rv_store - cache one answer; ttl per class from the domain */
static void
rv_store(const struct policy_domain *d, const char *key, int yes, int code,
         const char *text, long fresh)
{
	struct spool_verify_entry e;
	int64_t now = (int64_t)time(NULL);

	if (rv_cache == NULL)
		return;
	memset(&e, 0, sizeof(e));
	e.answer = yes;
	e.code = code;
	e.time = now;
	/* a yes is kept twice its TTL: the stale half is what a backup
	 * uses while the primary is down */
	e.keep_until = now + (yes ? 2 * fresh : fresh);
	snprintf(e.text, sizeof(e.text), "%s", text ? text : "");
	if (spool_verify_put(rv_cache, key, &e, now) < 0)
		log_warn("%s", spool_verify_error(rv_cache));
}

/* rv_callout_store - callout.c's hook: every 2xx/5xx of a primary */
static void
rv_callout_store(const char *domain, const char *address,
                 const struct result *r)
{
	const struct policy_domain *d =
	    policy_find_domain(backmxd.cfg->policy, domain);
	char key[SPOOL_VERIFY_KEY_MAX + 1];

	if (d == NULL)
		return;
	rv_key(key, sizeof(key), "c:", address);
	rv_store(d, key, r->code / 100 == 2, r->code, r->text,
	         r->code / 100 == 2 ? d->verify_pos_ttl : d->verify_neg_ttl);
}

/*
 * rv_lookup - the cache's view of key: 1 fresh (yes/no in *e), 2 only
 * a stale yes, 0 nothing usable
 */
static int
rv_lookup(const char *key, long pos_ttl, long neg_ttl,
          struct spool_verify_entry *e)
{
	int64_t now = (int64_t)time(NULL), age;

	if (rv_cache == NULL || spool_verify_get(rv_cache, key, e) != 1)
		return 0;
	age = now - e->time;
	if (age < 0)
		age = 0;
	if (e->answer && age < pos_ttl)
		return 1;
	if (!e->answer && age < neg_ttl)
		return 1;
	return e->answer ? 2 : 0;
}

int
rcpt_verify_init(char *err, size_t errlen)
{
	rv_cache = spool_verify_open(
	    backmxd.spool, backmxd.cfg->verify_cache_max, err, errlen);
	if (rv_cache == NULL)
		return -1;
	callout_set_store(rv_callout_store);
	ev_timer_init(&rv_expire, rv_expire_cb, 60., EXPIRE_EVERY);
	ev_timer_start(backmxd.loop, &rv_expire);
	ev_unref(backmxd.loop);
	return 0;
}

void
rcpt_verify_configure(const struct config *c)
{
	ldap_src_configure(c);
}

void
rcpt_verify_shutdown(void)
{
	callout_shutdown();
	ldap_src_shutdown();
	if (ev_is_active(&rv_expire)) {
		ev_ref(backmxd.loop);
		ev_timer_stop(backmxd.loop, &rv_expire);
	}
	spool_verify_close(rv_cache);
	rv_cache = NULL;
}

/* ------------------------------------------------------------------ */
/* walking the sources */

static int rv_step(struct rcpt_verify *v, struct result *res);

static void rv_trace(struct rcpt_verify *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
rv_trace(struct rcpt_verify *v, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	if (v->trace == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	v->trace(v->trace_arg, buf);
}

/* rv_finish - the verdict, counted */
static void
rv_finish(struct rcpt_verify *v, struct result *res)
{
	policy_rcpt_decide(v->d, v->address, &v->a, res);
	if (v->listed)
		return;
	if (res->code / 100 == 2) {
		stats.verify_valid++;
		if (!v->a.yes)
			stats.verify_stale++;
	} else if (res->code / 100 == 5)
		stats.verify_invalid++;
	else
		stats.verify_unknown++;
}

/* rv_resume - an async source answered: go on, report when decided */
static void
rv_resume(struct rcpt_verify *v)
{
	struct result res;

	if (rv_step(v, &res) == 1)
		return;
	v->cb(v->arg, &res);
	free(v);
}

static void
rv_probe_cb(void *arg, const struct result *r)
{
	struct rcpt_verify *v = arg;

	v->co = NULL;
	v->health_done = r->code / 100 == 2 ? 2 : 1;
	rv_resume(v);
}

static void
rv_callout_cb(void *arg, const struct result *r)
{
	struct rcpt_verify *v = arg;
	int cls = r->code / 100;

	v->co = NULL;
	rv_trace(v, "callout: %d %s %s", r->code, r->enh, r->text);
	if (cls == 2)
		v->a.yes = 1;
	else if (cls == 5) {
		snprintf(v->no_text, sizeof(v->no_text), "%d %.8s %.200s",
		         r->code, r->enh, r->text);
		v->a.no_text = v->no_text;
	} else
		v->a.unknown = 1;
	v->src++;
	rv_resume(v);
}

static void
rv_ldap_cb(void *arg, enum policy_answer a, const char *why)
{
	struct rcpt_verify *v = arg;
	char key[SPOOL_VERIFY_KEY_MAX + 1];

	v->lq = NULL;
	rv_ldap_key(key, sizeof(key), v->d->srcs[v->src].path, v->address);
	rv_trace(v, "ldap: %s%s%s",
	         a == POLICY_ANS_YES  ? "found"
	         : a == POLICY_ANS_NO ? "not found"
	                              : "unknown",
	         why ? ": " : "", why ? why : "");
	if (a == POLICY_ANS_YES) {
		v->a.yes = 1;
		rv_store(v->d, key, 1, 250, "found in LDAP", LDAP_CACHE_FRESH);
	} else if (a == POLICY_ANS_NO)
		rv_store(v->d, key, 0, 550, "not in LDAP", LDAP_CACHE_FRESH);
	else {
		struct spool_verify_entry e;

		/* the directory is down: its last yes counts as stale */
		if (rv_lookup(key, 0, 0, &e) == 2)
			v->a.stale_yes = 1;
		v->a.unknown = 1;
	}
	v->src++;
	rv_resume(v);
}

/* rv_health - accept_when primary-down; 1 pending, 0 go on, -1 refused */
static int
rv_health(struct rcpt_verify *v, struct result *res)
{
	char why[200];
	int st;

	if (v->d->accept_when != POLICY_ACCEPT_PRIMARY_DOWN)
		return 0;
	if (v->health_done == 0) {
		st = callout_primary_state(v->d, why, sizeof(why));
		if (st == 0) {
			v->co = callout_start(v->d, NULL, rv_probe_cb, v);
			if (v->co != NULL)
				return 1;
			st = 1; /* cannot probe: assume it is up */
		}
		v->health_done = st > 0 ? 2 : 1;
	}
	if (policy_accept_when_check(v->d, v->address, v->health_done == 2,
	                             res) < 0) {
		stats.accept_when_refused++;
		log_info("reject: RCPT to <%s>: %d %s primary is up "
		         "(accept_when primary-down)",
		         v->address, res->code, res->enh);
		return -1;
	}
	if (v->health_done == 1 && v->health_done != 3) {
		stats.accept_when_accepted++;
		log_info("accept_when primary-down: primary of %s is down, "
		         "taking mail for <%s>",
		         v->d->name, v->address);
		v->health_done = 3;
	}
	return 0;
}

/* rv_step - 1 pending, 0 decided (*res) */
static int
rv_step(struct rcpt_verify *v, struct result *res)
{
	const struct policy_domain *d = v->d;
	struct spool_verify_entry e;
	char key[SPOOL_VERIFY_KEY_MAX + 1], why[200];
	int st;

	switch (rv_health(v, res)) {
	case 1:
		return 1;
	case -1:
		return 0;
	}
	if (v->listed) {
		v->a.yes = 1;
		rv_finish(v, res);
		return 0;
	}
	for (; v->src < d->nsrcs && !v->a.yes; v->src++) {
		const struct policy_src *s = &d->srcs[v->src];

		if (s->kind == POLICY_SRC_LDAP) {
			rv_ldap_key(key, sizeof(key), s->path, v->address);
			if (!v->nocache &&
			    rv_lookup(key, LDAP_CACHE_FRESH, LDAP_CACHE_FRESH,
			              &e) == 1) {
				stats.verify_hits++;
				rv_trace(v, "ldap: cached %s",
				         e.answer ? "found" : "not found");
				if (e.answer)
					v->a.yes = 1;
				continue;
			}
			stats.verify_misses++;
			stats.verify_ldap++;
			v->lq =
			    ldap_src_lookup(s->path, v->address, rv_ldap_cb, v);
			if (v->lq != NULL)
				return 1;
			v->a.unknown = 1;
			continue;
		}
		if (s->kind != POLICY_SRC_CALLOUT)
			continue;
		rv_key(key, sizeof(key), "c:", v->address);
		st = v->nocache ? 0
		                : rv_lookup(key, d->verify_pos_ttl,
		                            d->verify_neg_ttl, &e);
		if (st == 1) {
			stats.verify_hits++;
			rv_trace(v, "callout: cached %d %s (%llds ago)", e.code,
			         e.text, (long long)(time(NULL) - e.time));
			if (e.answer)
				v->a.yes = 1;
			else {
				snprintf(v->no_text, sizeof(v->no_text),
				         "%d %.200s", e.code, e.text);
				v->a.no_text = v->no_text;
			}
			continue;
		}
		if (st == 2)
			v->a.stale_yes = 1;
		stats.verify_misses++;
		if (callout_primary_state(d, why, sizeof(why)) < 0) {
			/* no callout storm against a dead primary */
			rv_trace(v, "callout: primary down: %s", why);
			v->a.unknown = 1;
			continue;
		}
		v->co = callout_start(d, v->address, rv_callout_cb, v);
		if (v->co != NULL)
			return 1;
		v->a.unknown = 1;
	}
	rv_finish(v, res);
	return 0;
}

int
rcpt_verify_start(const struct policy_rcpt *r, rcpt_verify_cb cb, void *arg,
                  struct rcpt_verify **hp, struct result *res)
{
	struct rcpt_verify *v = calloc(1, sizeof(*v));

	*hp = NULL;
	if (v == NULL) {
		result_set(res, 451, "4.3.0", "out of memory");
		return 0;
	}
	v->d = r->domain;
	v->listed = r->listed;
	snprintf(v->address, sizeof(v->address), "%s", r->address);
	v->cb = cb;
	v->arg = arg;
	if (rv_step(v, res) == 0) {
		free(v);
		return 0;
	}
	*hp = v;
	return 1;
}

void
rcpt_verify_cancel(struct rcpt_verify *v)
{
	if (v == NULL)
		return;
	callout_cancel(v->co);
	ldap_src_cancel(v->lq);
	free(v);
}

/* ------------------------------------------------------------------ */
/* backmxctl verify ADDRESS [--now] */

struct rcpt_verify_ctl {
	struct rcpt_verify *v;
	ev_timer defer;
	struct result res;
	void (*line)(void *, const char *);
	void (*done)(void *, int);
	void *arg;
};

static void
rv_ctl_report(struct rcpt_verify_ctl *c)
{
	char buf[400];

	snprintf(buf, sizeof(buf), "verdict: %d %s %s", c->res.code, c->res.enh,
	         c->res.text);
	c->line(c->arg, buf);
	c->done(c->arg, 1);
	free(c);
}

static void
rv_ctl_defer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	rv_ctl_report(w->data);
}

static void
rv_ctl_cb(void *arg, const struct result *res)
{
	struct rcpt_verify_ctl *c = arg;

	c->v = NULL;
	c->res = *res;
	rv_ctl_report(c);
}

static void
rv_ctl_show_cache(struct rcpt_verify_ctl *c, const struct policy_domain *d,
                  const char *address)
{
	struct spool_verify_entry e;
	char key[SPOOL_VERIFY_KEY_MAX + 1], buf[512];
	int64_t now = (int64_t)time(NULL);

	for (int i = 0; i < d->nsrcs; i++) {
		const char *name;
		long ttl;

		if (d->srcs[i].kind == POLICY_SRC_CALLOUT) {
			rv_key(key, sizeof(key), "c:", address);
			name = "callout";
		} else if (d->srcs[i].kind == POLICY_SRC_LDAP) {
			rv_ldap_key(key, sizeof(key), d->srcs[i].path, address);
			name = "ldap";
		} else
			continue;
		if (spool_verify_get(rv_cache, key, &e) != 1) {
			snprintf(buf, sizeof(buf), "cache %s: none", name);
			c->line(c->arg, buf);
			continue;
		}
		ttl = d->srcs[i].kind == POLICY_SRC_LDAP ? LDAP_CACHE_FRESH
		      : e.answer                         ? d->verify_pos_ttl
		                                         : d->verify_neg_ttl;
		snprintf(buf, sizeof(buf),
		         "cache %s: %s, %d %s, age %llds (%s)", name,
		         e.answer ? "valid" : "invalid", e.code, e.text,
		         (long long)(now - e.time),
		         now - e.time < ttl ? "fresh" : "stale");
		c->line(c->arg, buf);
	}
}

struct rcpt_verify_ctl *
rcpt_verify_ctl_start(const char *address, int now,
                      void (*line)(void *, const char *),
                      void (*done)(void *, int), void *arg, char *err,
                      size_t errlen)
{
	struct rcpt_verify_ctl *c;
	struct policy_rcpt r;
	struct rcpt_verify *v;
	char path[POLICY_PATH_MAX + 16];
	size_t end;
	int rc;

	snprintf(path, sizeof(path), "<%s>", address);
	rc = policy_check_rcpt(backmxd.cfg->policy, path, strlen(path), 0, &r,
	                       &end, &((struct result){0}));
	if (rc < 0 || r.domain == NULL) {
		struct result res;

		policy_check_rcpt(backmxd.cfg->policy, path, strlen(path), 0,
		                  &r, &end, &res);
		snprintf(err, errlen, "%d %s %s", res.code, res.enh, res.text);
		return NULL;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->line = line;
	c->done = done;
	c->arg = arg;
	line(arg, r.listed ? "listed: yes (a file or *)" : "listed: no");
	rv_ctl_show_cache(c, r.domain, r.address);
	ev_timer_init(&c->defer, rv_ctl_defer_cb, 0., 0.);
	c->defer.data = c;
	if (!now) {
		/* what an RCPT would get now, from the cache alone */
		struct policy_rcpt_answers a = {0};
		struct spool_verify_entry e;
		char key[SPOOL_VERIFY_KEY_MAX + 1];

		a.yes = r.listed;
		for (int i = 0; !a.yes && i < r.domain->nsrcs; i++) {
			const struct policy_src *src = &r.domain->srcs[i];
			long pos, neg;

			if (src->kind == POLICY_SRC_CALLOUT) {
				rv_key(key, sizeof(key), "c:", r.address);
				pos = r.domain->verify_pos_ttl;
				neg = r.domain->verify_neg_ttl;
			} else if (src->kind == POLICY_SRC_LDAP) {
				rv_ldap_key(key, sizeof(key), src->path,
				            r.address);
				pos = neg = LDAP_CACHE_FRESH;
			} else
				continue;
			switch (rv_lookup(key, pos, neg, &e)) {
			case 1:
				a.yes = e.answer;
				break;
			case 2:
				a.stale_yes = 1;
				/* FALLTHROUGH */
			default:
				a.unknown = 1; /* would be asked */
			}
		}
		policy_rcpt_decide(r.domain, r.address, &a, &c->res);
		ev_timer_start(backmxd.loop, &c->defer);
		return c;
	}
	if ((v = calloc(1, sizeof(*v))) == NULL) {
		free(c);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	v->d = r.domain;
	v->listed = r.listed;
	v->nocache = 1;
	v->health_done = 3; /* a verdict on the address, not the policy */
	snprintf(v->address, sizeof(v->address), "%s", r.address);
	v->cb = rv_ctl_cb;
	v->arg = c;
	v->trace = line;
	v->trace_arg = arg;
	if (rv_step(v, &c->res) == 0) {
		free(v);
		ev_timer_start(backmxd.loop, &c->defer);
		return c;
	}
	c->v = v;
	return c;
}

void
rcpt_verify_ctl_cancel(struct rcpt_verify_ctl *c)
{
	if (c == NULL)
		return;
	ev_timer_stop(backmxd.loop, &c->defer);
	rcpt_verify_cancel(c->v);
	free(c);
}
