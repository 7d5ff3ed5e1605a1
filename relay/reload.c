/*
 * reload.c - SIGHUP and `backmxctl reload`: read the configuration file
 * again and swap it in only when it is whole and safe (see reload.h).
 *
 * "Safe" guards against the file an editor or a config-management run
 * leaves behind half written: an empty or truncated file has no domain
 * blocks (config_load refuses that), and a file cut between two domain
 * blocks parses but drops domains; a dropped domain that still has mail
 * in the spool is refused unless forced, so nobody bounces queued mail
 * by accident.  The file modes backmxd refuses to start with (a
 * world-writable spool, a key file others may read: config_check_modes)
 * refuse a reload too.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "backmxd.h"
#include "config_check.h"
#include "config_rcpt.h"
#include "log.h"
#include "rcpt_verify.h"
#include "reload.h"
#include "tls.h"

#define RELOAD_DIAG_MAX (64 * 1024)
#define RELOAD_GRACE 3600.0 /* a delivery may hold domain pointers */

struct reload_old {
	LIST_ENTRY(reload_old) entry;
	ev_timer timer;
	struct config *cfg;
};

static const char *reload_path = "/etc/backmx/backmx.conf";
void (*reload_done_hook)(void);

static LIST_HEAD(, reload_old) reload_olds = LIST_HEAD_INITIALIZER(reload_olds);

void
reload_set_path(const char *path)
{
	reload_path = path;
}

void
reload_log_diag(char *diag)
{
	char *save = NULL;

	for (char *l = strtok_r(diag, "\n", &save); l != NULL;
	     l = strtok_r(NULL, "\n", &save)) {
		if (strstr(l, ": warning: ") != NULL)
			log_warn("%s", l);
		else
			log_err("%s", l);
	}
}

static void
reload_old_free(struct reload_old *o)
{
	LIST_REMOVE(o, entry);
	config_free(o->cfg);
	free(o);
}

static void
reload_old_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	ev_ref(loop); /* undo the ev_unref of reload_config */
	reload_old_free(w->data);
}

void
reload_free_old(void)
{
	while (!LIST_EMPTY(&reload_olds)) {
		struct reload_old *o = LIST_FIRST(&reload_olds);

		if (backmxd.loop != NULL && ev_is_active(&o->timer)) {
			ev_ref(backmxd.loop);
			ev_timer_stop(backmxd.loop, &o->timer);
		}
		reload_old_free(o);
	}
}

/* ------------------------------------------------------------------ */
/* dropped domains that still have queued mail */

struct reload_scan {
	const struct policy *old, *new;
	char first[POLICY_DOMAIN_MAX + 1]; /* a dropped domain in use */
	uint64_t msgs;                     /* messages for dropped ones */
};

static int
reload_scan_cb(void *arg, const struct spool_envelope *e)
{
	struct reload_scan *r = arg;
	const char *at;

	for (int i = 0; i < e->nrcpt; i++) {
		if (e->rcpt[i].state != SPOOL_RCPT_PENDING ||
		    e->rcpt[i].address == NULL ||
		    (at = strrchr(e->rcpt[i].address, '@')) == NULL)
			continue;
		if (policy_find_domain(r->old, at + 1) == NULL ||
		    policy_find_domain(r->new, at + 1) != NULL)
			continue;
		if (r->first[0] == '\0')
			snprintf(r->first, sizeof(r->first), "%s", at + 1);
		r->msgs++;
		break;
	}
	return 0;
}

/*
 * reload_dropped_in_use - how many queued messages have a pending
 * recipient in a domain the old config serves and the new one does not
 * (-1 when the spool cannot be read).  Scans only when a domain is
 * dropped at all, which is rare; the scan runs on the loop.
 */
static int64_t
reload_dropped_in_use(const struct config *old, const struct config *nc,
                      char *first, size_t firstlen, int *ndropped)
{
	struct reload_scan r;
	char after[SPOOL_ID_LEN + 1] = "";
	int n, dropped = 0;

	for (int i = 0; i < old->policy->ndomains; i++)
		if (policy_find_domain(nc->policy,
		                       old->policy->domains[i]->name) == NULL)
			dropped++;
	*ndropped = dropped;
	if (dropped == 0 || backmxd.spool == NULL)
		return 0;
	memset(&r, 0, sizeof(r));
	r.old = old->policy;
	r.new = nc->policy;
	/* all at once: spool_scan with max 0 visits every envelope */
	n = spool_scan(backmxd.spool, after, 0, reload_scan_cb, &r);
	if (n < 0)
		return -1;
	snprintf(first, firstlen, "%s", r.first);
	return (int64_t)r.msgs;
}

int
reload_config(int force, char *msg, size_t msglen)
{
	char *diag = malloc(RELOAD_DIAG_MAX), first[POLICY_DOMAIN_MAX + 1];
	struct config *nc, *old = backmxd.cfg;
	struct reload_old *o;
	int64_t inuse;
	int nerr = 0, ndropped = 0;

	if (diag == NULL) {
		snprintf(msg, msglen,
		         "out of memory; keeping the running "
		         "configuration");
		log_err("reload: %s", msg);
		return -1;
	}
	nc = config_load(reload_path, diag, RELOAD_DIAG_MAX, &nerr);
	if (nc == NULL) {
		snprintf(msg, msglen,
		         "%s has %d error(s); keeping the running "
		         "configuration",
		         reload_path, nerr);
		log_err("reload: %s", msg);
		reload_log_diag(diag);
		free(diag);
		return -1;
	}
	reload_log_diag(diag);
	/* the file modes start refuses (a world-writable spool, a key
	 * others can read) refuse the reload too */
	diag[0] = '\0';
	nerr = config_check_modes(nc, diag, RELOAD_DIAG_MAX);
	if (nerr > 0) {
		snprintf(msg, msglen,
		         "%s: %d unsafe file mode(s); keeping the running "
		         "configuration",
		         reload_path, nerr);
		log_err("reload: %s", msg);
		reload_log_diag(diag);
		free(diag);
		config_free(nc);
		return -1;
	}
	free(diag);
	inuse = reload_dropped_in_use(old, nc, first, sizeof(first), &ndropped);
	if (inuse < 0) {
		snprintf(msg, msglen,
		         "cannot read the spool to check the %d dropped "
		         "domain(s): %s; keeping the running configuration",
		         ndropped, spool_error(backmxd.spool));
		log_err("reload: %s", msg);
		config_free(nc);
		return -1;
	}
	if (inuse > 0 && !force) {
		snprintf(msg, msglen,
		         "%s drops %d domain(s) and %lld queued message(s) "
		         "are for them (e.g. %s); keeping the running "
		         "configuration (backmxctl reload --force to drop "
		         "them anyway)",
		         reload_path, ndropped, (long long)inuse, first);
		log_err("reload: %s", msg);
		config_free(nc);
		return -1;
	}
	if (!force && config_rcpt_emptied(old, nc, msg, msglen)) {
		log_err("reload: %s", msg);
		config_free(nc);
		return -1;
	}
	if (nc->nlisten != old->nlisten ||
	    memcmp(nc->listen, old->listen, nc->nlisten * sizeof(*nc->listen)))
		log_warn("reload: listen addresses changed; they take effect "
		         "at the next restart");
	if (strcmp(nc->spool, old->spool) != 0 ||
	    strcmp(nc->control, old->control) != 0)
		log_warn("reload: spool/control paths changed; they take "
		         "effect at the next restart");
	if (nc->spool_cache != old->spool_cache)
		log_warn("reload: spool_cache changed; it takes effect at the "
		         "next restart");
	if (tls_server_reload(nc) < 0) {
		snprintf(msg, msglen,
		         "TLS certificate/key unusable; keeping "
		         "the running configuration");
		log_err("reload: %s", msg);
		config_free(nc);
		return -1;
	}
	if (inuse > 0)
		log_warn("reload: forced: %d domain(s) dropped with %lld "
		         "queued message(s) (e.g. %s); they stay queued, "
		         "deferred until the domain is configured again or "
		         "their lifetime ends",
		         ndropped, (long long)inuse, first);
	backmxd.cfg = nc;
	rcpt_verify_configure(nc); /* ldap:FILEs read again */
	/* deliveries and DNS callbacks may still point into the old
	 * config's domain table: free it only after a grace period */
	if ((o = calloc(1, sizeof(*o))) != NULL) {
		o->cfg = old;
		ev_timer_init(&o->timer, reload_old_cb, RELOAD_GRACE, 0.);
		o->timer.data = o;
		ev_timer_start(backmxd.loop, &o->timer);
		ev_unref(backmxd.loop);
		LIST_INSERT_HEAD(&reload_olds, o, entry);
	}
	snprintf(msg, msglen, "reloaded %s: %d domain(s)", reload_path,
	         nc->policy->ndomains);
	log_info("%s", msg);
	if (reload_done_hook != NULL)
		reload_done_hook(); /* the workers load it too (worker.c) */
	return 0;
}
