/*
 * ldap_open.c - opening an ldap:FILE connection off the event loop (see
 * ldap_open.h).  libldap connects inside its first call on a handle, and
 * its StartTLS handshake polls the socket until the network timeout:
 * neither can be driven by libev.  So the whole opening (resolve,
 * connect, StartTLS or ldaps://, the simple bind) runs in a short-lived
 * detached thread, each step bounded by the FILE's timeout, and the
 * bound handle is handed to the loop through an ev_async.  Searches then
 * run on the loop (ldap_src.c).  The thread touches nothing of the
 * daemon but its own job.
 *
 * Ownership: a job is freed by whoever sees it last: the loop after
 * calling cb, or the thread when the job was cancelled (it unbinds the
 * handle it made).  cb owns the LDAP handle it gets.
 */
#include <ldap.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backmxd.h"
#include "ldap_open.h"
#include "ldap_result.h"

struct ldap_open {
	struct ldap_open *next; /* in lo_done */
	struct ldap_cfg cfg;    /* a copy: the thread's own */
	LDAP *ld;               /* bound, or NULL */
	char why[256];
	int cancelled, finished;
	ldap_open_cb cb;
	void *arg;
};

static pthread_mutex_t lo_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct ldap_open *lo_done; /* finished, cb not run yet */
static int lo_closing;            /* no ev_async_send any more */
static ev_async lo_async;
static int lo_async_on;

/* ------------------------------------------------------------------ */
/* the thread */

/* lo_wait - the result of msgid within the timeout; 0, or -1 with why */
static int
lo_wait(struct ldap_open *o, int msgid, const char *what)
{
	struct timeval tv = {o->cfg.timeout, 0};
	LDAPMessage *res = NULL;
	int rc, err = LDAP_OTHER;

	rc = ldap_result(o->ld, msgid, LDAP_MSG_ALL, &tv, &res);
	if (rc == 0) {
		snprintf(o->why, sizeof(o->why), "%s: no answer within %ds",
		         what, o->cfg.timeout);
		ldap_msgfree(res);
		return -1;
	}
	if (rc < 0) {
		ldap_get_option(o->ld, LDAP_OPT_RESULT_CODE, &err);
		snprintf(o->why, sizeof(o->why), "%s: %s", what,
		         ldap_err2string(err));
		return -1;
	}
	rc = ldap_parse_result(o->ld, res, &err, NULL, NULL, NULL, NULL, 1);
	if (rc != LDAP_SUCCESS || err != LDAP_SUCCESS) {
		snprintf(o->why, sizeof(o->why), "%s: %s", what,
		         ldap_err2string(rc != LDAP_SUCCESS ? rc : err));
		return -1;
	}
	return 0;
}

/* lo_options - protocol, timeouts, TLS verification of the handle */
static int
lo_options(struct ldap_open *o)
{
	struct timeval tv = {o->cfg.timeout, 0};
	int v3 = LDAP_VERSION3, demand = LDAP_OPT_X_TLS_DEMAND, zero = 0;

	ldap_set_option(o->ld, LDAP_OPT_PROTOCOL_VERSION, &v3);
	ldap_set_option(o->ld, LDAP_OPT_NETWORK_TIMEOUT, &tv);
	ldap_set_option(o->ld, LDAP_OPT_TIMEOUT, &tv);
	ldap_set_option(o->ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
	/* a BER message over LDAP_REPLY_MAX is an error, not a buffer of
	 * the size a hostile directory announces (libldap's client
	 * default is no limit: 2 GB announced, filled as fast as it comes) */
	ldap_result_limit(o->ld);
	if (!o->cfg.start_tls && strncasecmp(o->cfg.uri, "ldaps:", 6) != 0)
		return 0; /* no TLS on this connection */
	/* the directory's certificate is always checked, whatever
	 * ldap.conf says: a backup MX must not trust a forged one */
	ldap_set_option(o->ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &demand);
	if (o->cfg.ca_file[0] != '\0' &&
	    ldap_set_option(o->ld, LDAP_OPT_X_TLS_CACERTFILE, o->cfg.ca_file) !=
	        LDAP_OPT_SUCCESS) {
		snprintf(o->why, sizeof(o->why),
		         "tls_ca_cert_file %.200s refused", o->cfg.ca_file);
		return -1;
	}
	/* a context of this handle's own with the settings above */
	if (ldap_set_option(o->ld, LDAP_OPT_X_TLS_NEWCTX, &zero) !=
	    LDAP_OPT_SUCCESS) {
		snprintf(o->why, sizeof(o->why), "TLS context: %s",
		         o->cfg.ca_file[0] ? "bad tls_ca_cert_file"
		                           : "cannot be made");
		return -1;
	}
	return 0;
}

/* lo_run - open and bind; o->ld set on success, why on failure */
static void
lo_run(struct ldap_open *o)
{
	struct berval cred;
	int rc, msgid;

	if (ldap_initialize(&o->ld, o->cfg.uri) != LDAP_SUCCESS) {
		o->ld = NULL;
		snprintf(o->why, sizeof(o->why), "bad server_host");
		return;
	}
	if (lo_options(o) < 0)
		goto fail;
	if (o->cfg.start_tls) {
		rc = ldap_start_tls(o->ld, NULL, NULL, &msgid);
		if (rc != LDAP_SUCCESS) {
			snprintf(o->why, sizeof(o->why), "StartTLS: %s",
			         ldap_err2string(rc));
			goto fail;
		}
		if (lo_wait(o, msgid, "StartTLS") < 0)
			goto fail;
		rc = ldap_install_tls(o->ld);
		if (rc != LDAP_SUCCESS) {
			char *diag = NULL;

			ldap_get_option(o->ld, LDAP_OPT_DIAGNOSTIC_MESSAGE,
			                &diag);
			snprintf(o->why, sizeof(o->why), "TLS: %s%s%.150s",
			         ldap_err2string(rc), diag ? ": " : "",
			         diag ? diag : "");
			ldap_memfree(diag);
			goto fail;
		}
	}
	/* a simple bind (anonymous without bind_dn): it also proves the
	 * directory answers before the loop relies on it */
	cred.bv_val = o->cfg.bind_pw;
	cred.bv_len = strlen(o->cfg.bind_pw);
	rc = ldap_sasl_bind(o->ld, o->cfg.bind_dn, LDAP_SASL_SIMPLE, &cred,
	                    NULL, NULL, &msgid);
	if (rc != LDAP_SUCCESS) {
		snprintf(o->why, sizeof(o->why), "bind: %s",
		         ldap_err2string(rc));
		goto fail;
	}
	if (lo_wait(o, msgid, "bind") < 0)
		goto fail;
	memset(o->cfg.bind_pw, 0, sizeof(o->cfg.bind_pw));
	return;
fail:
	memset(o->cfg.bind_pw, 0, sizeof(o->cfg.bind_pw));
	if (o->ld != NULL)
		ldap_unbind_ext(o->ld, NULL, NULL);
	o->ld = NULL;
}

static void *
lo_thread(void *arg)
{
	struct ldap_open *o = arg;

	lo_run(o);
	pthread_mutex_lock(&lo_mutex);
	o->finished = 1;
	if (o->cancelled || lo_closing) {
		pthread_mutex_unlock(&lo_mutex);
		if (o->ld != NULL)
			ldap_unbind_ext(o->ld, NULL, NULL);
		free(o);
		return NULL;
	}
	o->next = lo_done;
	lo_done = o;
	/* under the lock: lo_closing cannot be set between the check and
	 * this, so the loop still exists */
	ev_async_send(backmxd.loop, &lo_async);
	pthread_mutex_unlock(&lo_mutex);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* the loop's side */

static void
lo_async_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	struct ldap_open *o, *next;

	pthread_mutex_lock(&lo_mutex);
	o = lo_done;
	lo_done = NULL;
	pthread_mutex_unlock(&lo_mutex);
	for (; o != NULL; o = next) {
		next = o->next;
		o->cb(o->arg, o->ld, o->ld != NULL ? NULL : o->why);
		free(o);
	}
}

struct ldap_open *
ldap_open_start(const struct ldap_cfg *cfg, ldap_open_cb cb, void *arg,
                char *why, size_t whylen)
{
	struct ldap_open *o;
	pthread_attr_t attr;
	pthread_t t;
	int rc;

	if (!lo_async_on) {
		ev_async_init(&lo_async, lo_async_cb);
		ev_async_start(backmxd.loop, &lo_async);
		ev_unref(backmxd.loop); /* never keeps the loop alive */
		lo_async_on = 1;
		lo_closing = 0;
	}
	if ((o = calloc(1, sizeof(*o))) == NULL) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	o->cfg = *cfg;
	o->cb = cb;
	o->arg = arg;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&t, &attr, lo_thread, o);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		snprintf(why, whylen, "cannot start a thread: %s",
		         strerror(rc));
		memset(o->cfg.bind_pw, 0, sizeof(o->cfg.bind_pw));
		free(o);
		return NULL;
	}
	return o;
}

void
ldap_open_cancel(struct ldap_open *o)
{
	struct ldap_open **pp;

	if (o == NULL)
		return;
	pthread_mutex_lock(&lo_mutex);
	if (!o->finished) {
		o->cancelled = 1; /* the thread frees it */
		pthread_mutex_unlock(&lo_mutex);
		return;
	}
	for (pp = &lo_done; *pp != NULL; pp = &(*pp)->next)
		if (*pp == o) {
			*pp = o->next;
			break;
		}
	pthread_mutex_unlock(&lo_mutex);
	if (o->ld != NULL)
		ldap_unbind_ext(o->ld, NULL, NULL);
	free(o);
}

void
ldap_open_shutdown(void)
{
	struct ldap_open *o, *next;

	if (!lo_async_on)
		return;
	pthread_mutex_lock(&lo_mutex);
	lo_closing = 1;
	o = lo_done;
	lo_done = NULL;
	pthread_mutex_unlock(&lo_mutex);
	for (; o != NULL; o = next) {
		next = o->next;
		if (o->ld != NULL)
			ldap_unbind_ext(o->ld, NULL, NULL);
		free(o);
	}
	ev_ref(backmxd.loop);
	ev_async_stop(backmxd.loop, &lo_async);
	lo_async_on = 0;
}
