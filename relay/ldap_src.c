/*
 * ldap_src.c - the ldap:FILE recipient source (see ldap_src.h).  One
 * connection per FILE.  It is opened and bound by a worker thread
 * (ldap_open.c: connect, StartTLS, bind never run on the loop); once
 * bound, searches are sent with ldap_search_ext and their results
 * collected with ldap_result(timeout 0) when libev says the connection's
 * descriptor is readable, so a lookup never blocks the loop.  A lookup
 * made while the connection is being opened waits for it, bounded by its
 * own timer.
 *
 * Called by rcpt_verify.c (lookups) and config_rcpt.c (-t checks).
 */
#include <ldap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backmxd.h"
#include "config.h"
#include "ldap_open.h"
#include "ldap_result.h"
#include "ldap_src.h"
#include "log.h"

unsigned long long ldap_src_lookups, ldap_src_errors;

struct ldap_src_req {
	struct ldap_src_req *next;
	struct ldap_conn *lc;
	int msgid; /* -1 until sent */
	char filter[LDAP_FILTER_MAX];
	ev_timer timer;
	ldap_src_cb cb;
	void *arg;
};

enum lc_state { LC_DOWN, LC_OPENING, LC_READY };

struct ldap_conn {
	struct ldap_conn *next;
	char file[4096];
	struct ldap_cfg cfg;
	int cfg_ok;
	LDAP *ld;
	enum lc_state state;
	struct ldap_open *opening; /* LC_OPENING: the worker's job */
	ev_io io;
	ev_timer kick; /* open / send from the loop */
	double retry_after;
	struct ldap_src_req *reqs;
	char why[256];
};

static struct ldap_conn *ldap_conns;

/* ------------------------------------------------------------------ */
/* requests */

static void
req_unlink(struct ldap_src_req *q)
{
	struct ldap_src_req **pp;

	for (pp = &q->lc->reqs; *pp != NULL; pp = &(*pp)->next)
		if (*pp == q) {
			*pp = q->next;
			break;
		}
}

/* req_done - unlink, answer, free */
static void
req_done(struct ldap_src_req *q, enum policy_answer a, const char *why)
{
	ev_timer_stop(backmxd.loop, &q->timer);
	req_unlink(q);
	if (a == POLICY_ANS_UNKNOWN)
		ldap_src_errors++;
	q->cb(q->arg, a, why);
	free(q);
}

static void lc_close(struct ldap_conn *lc, const char *why);

static void
req_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct ldap_src_req *q = w->data;

	struct ldap_conn *lc = q->lc;

	if (q->msgid >= 0 && lc->ld != NULL)
		ldap_abandon_ext(lc->ld, q->msgid, NULL, NULL);
	req_done(q, POLICY_ANS_UNKNOWN,
	         lc->state == LC_OPENING ? "LDAP connect/bind timed out"
	                                 : "LDAP lookup timed out");
}

static void
req_send(struct ldap_src_req *q)
{
	struct ldap_conn *lc = q->lc;
	struct timeval tv = {lc->cfg.timeout, 0};
	char *attrs[] = {LDAP_NO_ATTRS, NULL};
	int rc;

	rc =
	    ldap_search_ext(lc->ld, lc->cfg.base, LDAP_SCOPE_SUBTREE, q->filter,
	                    attrs, 1, NULL, NULL, &tv, 2, &q->msgid);
	if (rc != LDAP_SUCCESS) {
		q->msgid = -1;
		lc_close(lc, ldap_err2string(rc));
	}
}

/* ------------------------------------------------------------------ */
/* the connection */

static void lc_io_cb(struct ev_loop *loop, ev_io *w, int revents);

static void
lc_close(struct ldap_conn *lc, const char *why)
{
	struct ldap_src_req *q, *next;
	char msg[250];

	snprintf(msg, sizeof(msg), "LDAP %.100s: %.120s", lc->cfg.uri, why);
	if (lc->opening != NULL) {
		ldap_open_cancel(lc->opening);
		lc->opening = NULL;
	}
	if (lc->ld == NULL && lc->state != LC_DOWN)
		log_warn("ldap: %s: %s", lc->cfg.uri, why);
	if (lc->ld != NULL) {
		log_warn("ldap: %s: %s", lc->cfg.uri, why);
		ev_io_stop(backmxd.loop, &lc->io);
		ldap_unbind_ext(lc->ld, NULL, NULL);
		lc->ld = NULL;
	}
	lc->state = LC_DOWN;
	lc->retry_after = ev_now(backmxd.loop) + lc->cfg.timeout;
	snprintf(lc->why, sizeof(lc->why), "%s", msg);
	/* every waiting lookup: unknown (verify_down decides) */
	for (q = lc->reqs; q != NULL; q = next) {
		next = q->next;
		req_done(q, POLICY_ANS_UNKNOWN, msg);
	}
}

static void
lc_ready(struct ldap_conn *lc)
{
	struct ldap_src_req *q, *next;

	lc->state = LC_READY;
	for (q = lc->reqs; q != NULL && lc->state == LC_READY; q = next) {
		next = q->next;
		if (q->msgid < 0)
			req_send(q);
	}
}

/* lc_watch - put the connection's descriptor under an ev_io */
static int
lc_watch(struct ldap_conn *lc)
{
	int fd = -1;

	if (ldap_get_option(lc->ld, LDAP_OPT_DESC, &fd) != LDAP_OPT_SUCCESS ||
	    fd < 0 || ldap_result_nonblock(lc->ld) < 0)
		return -1;
	ev_io_stop(backmxd.loop, &lc->io);
	ev_io_init(&lc->io, lc_io_cb, fd, EV_READ);
	lc->io.data = lc;
	ev_io_start(backmxd.loop, &lc->io);
	return 0;
}

/* lc_opened - the worker's answer: a bound handle, or why not */
static void
lc_opened(void *arg, LDAP *ld, const char *why)
{
	struct ldap_conn *lc = arg;

	lc->opening = NULL;
	if (ld == NULL) {
		lc_close(lc, why);
		return;
	}
	lc->ld = ld;
	if (lc_watch(lc) < 0) {
		lc_close(lc, "no connection descriptor");
		return;
	}
	lc_ready(lc);
}

static void
lc_open(struct ldap_conn *lc)
{
	char why[200];

	lc->opening =
	    ldap_open_start(&lc->cfg, lc_opened, lc, why, sizeof(why));
	if (lc->opening == NULL) {
		lc_close(lc, why);
		return;
	}
	lc->state = LC_OPENING;
}

static struct ldap_src_req *
lc_find(struct ldap_conn *lc, int msgid)
{
	for (struct ldap_src_req *q = lc->reqs; q != NULL; q = q->next)
		if (q->msgid == msgid)
			return q;
	return NULL;
}

static void
lc_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct ldap_conn *lc = w->data;
	struct ldap_src_req *q;
	enum policy_answer a;
	const char *why;
	int rc, msgid;

	while (lc->ld != NULL) {
		rc = ldap_result_next(lc->ld, &msgid, &a, &why);
		if (rc == 0)
			return;
		if (rc < 0) {
			lc_close(lc, why);
			return;
		}
		if ((q = lc_find(lc, msgid)) != NULL) /* else abandoned */
			req_done(q, a, why);
	}
}

static void
lc_kick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct ldap_conn *lc = w->data;

	if (lc->reqs == NULL)
		return;
	if (lc->state == LC_DOWN)
		lc_open(lc);
	else if (lc->state == LC_READY)
		lc_ready(lc);
}

static struct ldap_conn *
lc_find_file(const char *file)
{
	struct ldap_conn *lc;

	for (lc = ldap_conns; lc != NULL; lc = lc->next)
		if (!strcmp(lc->file, file))
			return lc;
	return NULL;
}

static struct ldap_conn *
lc_get(const char *file, char *why, size_t whylen)
{
	struct ldap_conn *lc;

	if ((lc = lc_find_file(file)) != NULL)
		return lc;
	if ((lc = calloc(1, sizeof(*lc))) == NULL)
		return NULL;
	snprintf(lc->file, sizeof(lc->file), "%s", file);
	ev_timer_init(&lc->kick, lc_kick_cb, 0., 0.);
	lc->kick.data = lc;
	if (ldap_conf_parse(file, &lc->cfg,
	                    backmxd.cfg ? backmxd.cfg->user : NULL, why,
	                    whylen) == 0)
		lc->cfg_ok = 1;
	else
		log_err("ldap: %s", why);
	lc->next = ldap_conns;
	ldap_conns = lc;
	return lc;
}

/*
 * lc_reset - drop the handle (a new definition): lookups in flight are
 * sent again on the new connection, each still bounded by its timer
 */
static void
lc_reset(struct ldap_conn *lc)
{
	struct ldap_src_req *q;

	if (lc->opening != NULL) {
		ldap_open_cancel(lc->opening);
		lc->opening = NULL;
	}
	for (q = lc->reqs; q != NULL; q = q->next) {
		if (q->msgid >= 0 && lc->ld != NULL)
			ldap_abandon_ext(lc->ld, q->msgid, NULL, NULL);
		q->msgid = -1;
	}
	if (lc->ld != NULL) {
		ev_io_stop(backmxd.loop, &lc->io);
		ldap_unbind_ext(lc->ld, NULL, NULL);
		lc->ld = NULL;
	}
	lc->state = LC_DOWN;
	lc->retry_after = 0;
	lc->why[0] = '\0';
	if (lc->reqs != NULL) {
		ev_timer_stop(backmxd.loop, &lc->kick);
		ev_timer_set(&lc->kick, 0., 0.);
		ev_timer_start(backmxd.loop, &lc->kick);
	}
}

/* lc_same - the parts of a definition a connection depends on */
static int
lc_same(const struct ldap_cfg *a, const struct ldap_cfg *b)
{
	return !strcmp(a->uri, b->uri) && !strcmp(a->base, b->base) &&
	       !strcmp(a->filter, b->filter) &&
	       !strcmp(a->bind_dn, b->bind_dn) &&
	       !strcmp(a->bind_pw, b->bind_pw) &&
	       !strcmp(a->ca_file, b->ca_file) && a->timeout == b->timeout &&
	       a->start_tls == b->start_tls;
}

/* lc_reread - FILE again; a file that does not parse keeps the old one */
static void
lc_reread(struct ldap_conn *lc, const char *user)
{
	struct ldap_cfg *nc = calloc(1, sizeof(*nc));
	char why[400];

	if (nc == NULL)
		return;
	if (ldap_conf_parse(lc->file, nc, user, why, sizeof(why)) < 0) {
		if (lc->cfg_ok)
			log_err("ldap: %s; keeping the definition read "
			        "before (%s)",
			        why, lc->cfg.uri);
		else
			log_err("ldap: %s", why);
	} else if (!lc->cfg_ok || !lc_same(&lc->cfg, nc)) {
		if (lc->cfg_ok)
			log_info("ldap: %s changed: %s %s, reconnecting",
			         lc->file, nc->uri, nc->base);
		memset(lc->cfg.bind_pw, 0, sizeof(lc->cfg.bind_pw));
		lc->cfg = *nc;
		lc->cfg_ok = 1;
		lc_reset(lc);
	}
	memset(nc->bind_pw, 0, sizeof(nc->bind_pw));
	free(nc);
}

static int
lc_in_config(const struct config *c, const char *file)
{
	for (int i = 0; i < c->policy->ndomains; i++) {
		const struct policy_domain *d = c->policy->domains[i];

		for (int j = 0; j < d->nsrcs; j++)
			if (d->srcs[j].kind == POLICY_SRC_LDAP &&
			    !strcmp(d->srcs[j].path, file))
				return 1;
	}
	return 0;
}

void
ldap_src_configure(const struct config *c)
{
	struct ldap_conn *lc;
	char why[400];

	/* files already known: read again (a SIGHUP) */
	for (lc = ldap_conns; lc != NULL; lc = lc->next) {
		if (lc_in_config(c, lc->file))
			lc_reread(lc, c->user);
		else if (lc->reqs == NULL && lc->state != LC_DOWN) {
			lc_reset(lc); /* no longer used: let it go */
			log_info("ldap: %s is no longer used, connection "
			         "closed",
			         lc->file);
		}
	}
	/* new ones: read now, not at the first lookup */
	for (int i = 0; i < c->policy->ndomains; i++) {
		const struct policy_domain *d = c->policy->domains[i];

		for (int j = 0; j < d->nsrcs; j++)
			if (d->srcs[j].kind == POLICY_SRC_LDAP &&
			    lc_find_file(d->srcs[j].path) == NULL)
				(void)lc_get(d->srcs[j].path, why, sizeof(why));
	}
}

unsigned long
ldap_src_definition_id(const char *file)
{
	struct ldap_conn *lc;
	char why[400];
	const char *parts[3];
	unsigned long h = 2166136261UL;

	if ((lc = lc_get(file, why, sizeof(why))) == NULL || !lc->cfg_ok)
		return 0;
	parts[0] = lc->cfg.uri;
	parts[1] = lc->cfg.base;
	parts[2] = lc->cfg.filter;
	/* FNV-1a over what decides an answer (not the credentials) */
	for (int i = 0; i < 3; i++)
		for (const char *p = parts[i];; p++) {
			h = ((h ^ (unsigned char)*p) * 16777619UL) &
			    0xffffffffUL;
			if (*p == '\0')
				break;
		}
	return h;
}

struct ldap_src_req *
ldap_src_lookup(const char *file, const char *address, ldap_src_cb cb,
                void *arg)
{
	struct ldap_conn *lc;
	struct ldap_src_req *q;
	char why[400];

	if ((lc = lc_get(file, why, sizeof(why))) == NULL || !lc->cfg_ok)
		return NULL;
	if (lc->state == LC_DOWN && ev_now(backmxd.loop) < lc->retry_after)
		return NULL; /* failed lately: unknown at once */
	if ((q = calloc(1, sizeof(*q))) == NULL)
		return NULL;
	if (policy_ldap_filter(lc->cfg.filter, address, q->filter,
	                       sizeof(q->filter)) < 0) {
		free(q);
		return NULL;
	}
	ldap_src_lookups++;
	q->lc = lc;
	q->msgid = -1;
	q->cb = cb;
	q->arg = arg;
	ev_timer_init(&q->timer, req_timer_cb, (double)lc->cfg.timeout, 0.);
	q->timer.data = q;
	ev_timer_start(backmxd.loop, &q->timer);
	q->next = lc->reqs;
	lc->reqs = q;
	/* never answer inside this call: open or send from the loop */
	ev_timer_stop(backmxd.loop, &lc->kick);
	ev_timer_set(&lc->kick, 0., 0.);
	ev_timer_start(backmxd.loop, &lc->kick);
	return q;
}

void
ldap_src_cancel(struct ldap_src_req *q)
{
	if (q == NULL)
		return;
	ev_timer_stop(backmxd.loop, &q->timer);
	if (q->msgid >= 0 && q->lc->ld != NULL)
		ldap_abandon_ext(q->lc->ld, q->msgid, NULL, NULL);
	req_unlink(q);
	free(q);
}

void
ldap_src_shutdown(void)
{
	struct ldap_conn *lc, *next;

	for (lc = ldap_conns; lc != NULL; lc = next) {
		next = lc->next;
		ev_timer_stop(backmxd.loop, &lc->kick);
		lc_close(lc, "shutting down");
		memset(lc->cfg.bind_pw, 0, sizeof(lc->cfg.bind_pw));
		free(lc);
	}
	ldap_conns = NULL;
	ldap_open_shutdown();
}
