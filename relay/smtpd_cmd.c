/*
 * smtpd_cmd.c - the commands of the inbound ESMTP session: the command
 * table (verb, the phases it is allowed in, handler) and the handlers of
 * HELO/EHLO, MAIL, RCPT (with rcpt_verify's async answer), RSET, NOOP,
 * QUIT, VRFY, HELP, ETRN and STARTTLS; DATA and BDAT are smtpd_body.c's.
 *
 * smtpd.c's command loop calls smtpd_command() for each line; handlers
 * decide with policy/ (paths, recipients, ESMTP parameters) and reply
 * through smtpd_reply().  To add a command: a handler here and a row in
 * smtpd_commands[].
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "esmtp.h"
#include "forward.h"
#include "log.h"
#include "pause.h"
#include "smtpd_int.h"
#include "tls.h"

/* ETRN rate limit: a small table of recent requesters */
struct etrn_track {
	unsigned char addr[16];
	ev_tstamp window;
	int count;
};
static struct etrn_track etrn_track[SMTPD_ETRN_TRACK];

/* smtpd_addr_bytes - the address as 16 octets, and a hash of them */
static unsigned
smtpd_addr_bytes(const struct sockaddr_storage *ss, unsigned char out[16])
{
	unsigned h = 2166136261u;

	memset(out, 0, 16);
	if (ss->ss_family == AF_INET)
		memcpy(out, &((const struct sockaddr_in *)ss)->sin_addr, 4);
	else if (ss->ss_family == AF_INET6)
		memcpy(out, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
	for (int i = 0; i < 16; i++)
		h = (h ^ out[i]) * 16777619u;
	return h;
}

static int
smtpd_streq(const char *a, const char *b)
{
	return strcasecmp(a, b) == 0;
}

/* ------------------------------------------------------------------ */
/* HELO, EHLO */

static void
smtpd_hello(struct smtpd_session *s, char *arg, int esmtp)
{
	while (*arg == ' ')
		arg++;
	if (*arg == '\0' || strlen(arg) > 255) {
		smtpd_reply(s, "501 5.5.4 Syntax: %s hostname",
		            esmtp ? "EHLO" : "HELO");
		return;
	}
	for (char *p = arg; *p; p++)
		if (!isgraph((unsigned char)*p) && *p != ' ') {
			smtpd_reply(s, "501 5.5.4 Invalid %s argument",
			            esmtp ? "EHLO" : "HELO");
			return;
		}
	/* keep only the first word */
	arg[strcspn(arg, " ")] = '\0';
	/* EHLO/HELO must end a pipelined group: input already waiting
	 * behind it means the client did not wait for our reply */
	if (s->inlen > 0) {
		log_info("improper command pipelining after %s from "
		         "unknown[%s]",
		         esmtp ? "EHLO" : "HELO", s->addr);
		smtpd_reply(s,
		            "554 5.5.0 Error: SMTP protocol synchronization");
		stats.refused_other++;
		s->close_after_flush = 1;
		return;
	}
	if (s->milters != NULL && smtpd_milter_helo(s, arg, esmtp))
		return;
	smtpd_hello_done(s, arg, esmtp);
}

void
smtpd_hello_done(struct smtpd_session *s, const char *name, int esmtp)
{
	const struct config *cfg = backmxd.cfg;

	smtpd_tx_reset(s);
	snprintf(s->helo, sizeof(s->helo), "%s", name);
	s->esmtp = esmtp;
	s->n_ehlo++;
	if (!esmtp) {
		smtpd_reply(s, "250 %s", cfg->hostname);
		return;
	}
	smtpd_reply(s, "250-%s", cfg->hostname);
	smtpd_reply(s, "250-PIPELINING");
	smtpd_reply(s, "250-SIZE %llu", (unsigned long long)cfg->max_size);
	smtpd_reply(s, "250-ETRN");
	if (!s->tls && tls_server_ctx() != NULL)
		smtpd_reply(s, "250-STARTTLS");
	smtpd_reply(s, "250-ENHANCEDSTATUSCODES");
	smtpd_reply(s, "250-8BITMIME");
	smtpd_reply(s, "250-DSN");
	smtpd_reply(s, "250-SMTPUTF8");
	smtpd_reply(s, "250 CHUNKING");
}

static void
smtpd_cmd_ehlo(struct smtpd_session *s, char *arg)
{
	smtpd_hello(s, arg, 1);
}

static void
smtpd_cmd_helo(struct smtpd_session *s, char *arg)
{
	smtpd_hello(s, arg, 0);
}

static void
smtpd_cmd_mail(struct smtpd_session *s, char *arg)
{
	const struct config *cfg = backmxd.cfg;
	struct policy_path path;
	struct result res;
	struct smtpd_tx *tx;
	struct esmtp_mail mp;
	size_t end;

	if (strncasecmp(arg, "FROM:", 5) != 0) {
		smtpd_reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	arg += 5;
	while (*arg == ' ')
		arg++;
	if (policy_parse_path(arg, strlen(arg), POLICY_PARSE_SMTPUTF8, &path,
	                      &end, &res) < 0) {
		stats.refused_syntax++;
		smtpd_reply_result(s, &res);
		return;
	}
	if (arg[end] != '\0' && arg[end] != ' ') {
		smtpd_reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	if (path.kind == POLICY_PATH_POSTMASTER) {
		smtpd_reply(s, "501 5.1.7 Bad sender address syntax");
		return;
	}
	if (esmtp_mail_params(arg + end, &mp, &res) < 0) {
		smtpd_reply_result(s, &res);
		return;
	}
	if ((tx = calloc(1, sizeof(*tx))) == NULL) {
		smtpd_reply(s, "451 4.3.0 Error: out of memory");
		return;
	}
	tx->declared_size = mp.size;
	tx->body = mp.body;
	tx->smtputf8 = mp.smtputf8;
	tx->ret = mp.ret;
	if (mp.envid != NULL && (tx->envid = strdup(mp.envid)) == NULL) {
		smtpd_reply(s, "452 4.3.0 Error: out of memory");
		goto fail;
	}
	if (path.utf8 && !tx->smtputf8) {
		smtpd_reply(s, "553 5.6.7 Non-ASCII sender address requires "
		               "SMTPUTF8");
		stats.refused_syntax++;
		goto fail;
	}
	if (cfg->max_size > 0 && tx->declared_size > cfg->max_size) {
		smtpd_reply(s, "552 5.3.4 Message size exceeds fixed limit");
		stats.refused_size++;
		goto fail;
	}
	tx->sender = strdup(path.kind == POLICY_PATH_NULL ? "" : path.address);
	if (tx->sender == NULL) {
		smtpd_reply(s, "452 4.3.0 Error: out of memory");
		goto fail;
	}
	if (s->milters != NULL && smtpd_milter_mail(s, tx))
		return;
	smtpd_mail_done(s, tx);
	return;
fail:
	smtpd_tx_free(tx);
}

void
smtpd_mail_done(struct smtpd_session *s, struct smtpd_tx *tx)
{
	s->tx = tx;
	s->n_mail++;
	smtpd_reply(s, "250 2.1.0 Ok");
}

/* ------------------------------------------------------------------ */
/* MAIL, RCPT */

/* smtpd_rcpt_add - the recipient is valid: the milters, then in */
static void
smtpd_rcpt_add(struct smtpd_session *s, const struct policy_rcpt *rp,
               int notify, const char *orcpt)
{
	if (s->milters != NULL && smtpd_milter_rcpt(s, rp, notify, orcpt))
		return;
	smtpd_rcpt_add_now(s, rp, notify, orcpt);
}

void
smtpd_rcpt_add_now(struct smtpd_session *s, const struct policy_rcpt *rp,
                   int notify, const char *orcpt)
{
	struct smtpd_tx *tx = s->tx;
	const struct policy_rcpt r0 = *rp, *rr = &r0;
	char route[POLICY_DOMAIN_MAX + 16];
	struct smtpd_rcpt *rc;

	if (tx->nrcpt == tx->rcpt_cap) {
		int cap = tx->rcpt_cap ? tx->rcpt_cap * 2 : 4;
		struct smtpd_rcpt *p = realloc(tx->rcpt, cap * sizeof(*p));

		if (p == NULL) {
			smtpd_reply(s, "452 4.3.0 Error: out of memory");
			return;
		}
		tx->rcpt = p;
		tx->rcpt_cap = cap;
	}
	rc = &tx->rcpt[tx->nrcpt];
	memset(rc, 0, sizeof(*rc));
	rc->address = strdup(rr->address);
	rc->notify = notify;
	if (orcpt != NULL)
		rc->orcpt = strdup(orcpt);
	else if (rr->percent_hack)
		rc->orcpt = strdup(rr->orcpt);
	if (rr->percent_hack && rr->domain != NULL) {
		if (rr->domain->route_literal)
			snprintf(route, sizeof(route), "[%s]:%d",
			         rr->domain->route_host,
			         rr->domain->route_port);
		else
			snprintf(route, sizeof(route), "%s:%d",
			         rr->domain->route_host,
			         rr->domain->route_port);
		rc->route = strdup(route);
		stats.percent_hack++;
		log_info("percent-hack %s -> %s (from unknown[%s])",
		         rr->path.address, rr->address, s->addr);
	}
	if (rc->address == NULL ||
	    ((orcpt != NULL || rr->percent_hack) && rc->orcpt == NULL) ||
	    (rr->percent_hack && rr->domain != NULL && rc->route == NULL)) {
		free(rc->address);
		free(rc->orcpt);
		free(rc->route);
		memset(rc, 0, sizeof(*rc));
		smtpd_reply(s, "452 4.3.0 Error: out of memory");
		return;
	}
	tx->nrcpt++;
	s->n_rcpt++;
	smtpd_reply(s, "250 2.1.5 Ok");
}

/* smtpd_rcpt_refused - count, log and reply a refused recipient */
static void
smtpd_rcpt_refused(struct smtpd_session *s, const char *addr,
                   const struct result *res)
{
	if (!strcmp(res->enh, "5.1.1"))
		stats.refused_user++;
	else
		stats.refused_other++;
	log_info("reject: RCPT from [%s]: %d %s <%s>: %s; from=<%s> "
	         "helo=<%s>",
	         s->addr, res->code, res->enh, addr, res->text,
	         s->tx ? s->tx->sender : "", s->helo);
	smtpd_reply_result(s, res);
}

static void
smtpd_rcpt_verified_cb(void *arg, const struct result *res)
{
	struct smtpd_session *s = arg;

	s->rv = NULL;
	if (s->tx != NULL && res->code / 100 == 2)
		smtpd_rcpt_add(s, s->rv_rcpt, s->rv_notify, s->rv_orcpt);
	else
		smtpd_rcpt_refused(s, s->rv_rcpt->address, res);
	free(s->rv_rcpt);
	free(s->rv_orcpt);
	s->rv_rcpt = NULL;
	s->rv_orcpt = NULL;
	if (!s->milter_wait) /* else the milters' answer resumes */
		smtpd_resume(s);
}

/*
 * smtpd_rcpt_wait - r needs the other recipient sources: 1 when handled
 * (refused now, or pending: the session waits), 0 when valid now
 */
static int
smtpd_rcpt_wait(struct smtpd_session *s, const struct policy_rcpt *r,
                int notify, const char *orcpt)
{
	struct result res;

	if ((s->rv_rcpt = malloc(sizeof(*r))) == NULL) {
		smtpd_reply(s, "452 4.3.0 Error: out of memory");
		return 1;
	}
	*s->rv_rcpt = *r;
	s->rv_notify = notify;
	s->rv_orcpt = orcpt ? strdup(orcpt) : NULL;
	if (rcpt_verify_start(r, smtpd_rcpt_verified_cb, s, &s->rv, &res) ==
	    1) {
		smtpd_pause(s);
		return 1;
	}
	free(s->rv_rcpt);
	free(s->rv_orcpt);
	s->rv_rcpt = NULL;
	s->rv_orcpt = NULL;
	if (res.code / 100 == 2)
		return 0;
	smtpd_rcpt_refused(s, r->address, &res);
	return 1;
}

static void
smtpd_cmd_rcpt(struct smtpd_session *s, char *arg)
{
	const struct config *cfg = backmxd.cfg;
	struct smtpd_tx *tx = s->tx;
	struct policy_rcpt r;
	struct result res;
	struct esmtp_rcpt rp;
	char route[POLICY_DOMAIN_MAX + 16];
	size_t end;
	int rc, flags = POLICY_PARSE_RCPT;

	if (strncasecmp(arg, "TO:", 3) != 0) {
		smtpd_reply(s, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	arg += 3;
	while (*arg == ' ')
		arg++;
	tx->nrcpt_tried++;
	if (tx->nrcpt >= cfg->max_recipients) {
		smtpd_reply(s, "452 4.5.3 Error: too many recipients");
		return;
	}
	if (tx->smtputf8)
		flags |= POLICY_PARSE_SMTPUTF8;
	if ((rc = policy_check_rcpt(cfg->policy, arg, strlen(arg), flags, &r,
	                            &end, &res)) < 0) {
		if (!strcmp(res.enh, "5.7.1"))
			stats.refused_relay++;
		else if (!strcmp(res.enh, "5.1.1"))
			stats.refused_user++;
		else
			stats.refused_syntax++;
		log_info("NOQUEUE: reject: RCPT from unknown[%s]: %d %s %s; "
		         "from=<%s> to=<%s> proto=%s helo=<%s>",
		         s->addr, res.code, res.enh, res.text, tx->sender,
		         log_path(arg, route, sizeof(route)),
		         s->esmtp ? "ESMTP" : "SMTP", s->helo);
		smtpd_reply_result(s, &res);
		return;
	}
	if (arg[end] != '\0' && arg[end] != ' ') {
		smtpd_reply(s, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	if (r.domain != NULL && pause_is_paused(r.domain->name)) {
		/* backmxctl pause DOMAIN: the operator holds new mail off */
		stats.refused_other++;
		log_info("reject: RCPT from [%s]: 450 4.3.2 <%s>: mail for %s "
		         "paused by the operator; from=<%s> helo=<%s>",
		         s->addr, r.address, r.domain->name, tx->sender,
		         s->helo);
		smtpd_reply(s,
		            "450 4.3.2 <%s>: Mail for %s is paused, try "
		            "again later",
		            r.address, r.domain->name);
		return;
	}
	if (esmtp_rcpt_params(arg + end, &rp, &res) < 0) {
		smtpd_reply_result(s, &res);
		return;
	}
	if (rc == 1 && smtpd_rcpt_wait(s, &r, rp.notify, rp.orcpt))
		return;
	smtpd_rcpt_add(s, &r, rp.notify, rp.orcpt);
}

/* ------------------------------------------------------------------ */
/* ETRN, STARTTLS */

static int
smtpd_etrn_rate_ok(struct smtpd_session *s)
{
	unsigned char a[16];
	ev_tstamp now = ev_now(backmxd.loop);
	struct etrn_track *free_slot = NULL, *oldest = &etrn_track[0];

	smtpd_addr_bytes(&s->ss, a);
	for (int i = 0; i < SMTPD_ETRN_TRACK; i++) {
		struct etrn_track *t = &etrn_track[i];

		if (t->count > 0 && memcmp(t->addr, a, 16) == 0) {
			if (now - t->window > 60) {
				t->window = now;
				t->count = 0;
			}
			return ++t->count <= backmxd.cfg->etrn_rate;
		}
		if (t->count == 0 && free_slot == NULL)
			free_slot = t;
		if (t->window < oldest->window)
			oldest = t;
	}
	if (free_slot == NULL)
		free_slot = oldest;
	memcpy(free_slot->addr, a, 16);
	free_slot->window = now;
	free_slot->count = 1;
	return 1;
}

static void
smtpd_cmd_etrn(struct smtpd_session *s, char *arg)
{
	const struct config *cfg = backmxd.cfg;
	const struct policy_domain *d;
	char *name = arg;
	int n;

	if (*name == '@')
		name++;
	if (*name == '\0' || strchr(name, ' ') != NULL || *name == '#') {
		smtpd_reply(s, "501 5.5.4 Syntax: ETRN domain");
		return;
	}
	if (!config_etrn_allowed(cfg, (const struct sockaddr *)&s->ss)) {
		log_info("NOQUEUE: reject: ETRN from unknown[%s]: 459 4.7.1 "
		         "<%s>: client not authorized to request ETRN; "
		         "proto=ESMTP helo=<%s>",
		         s->addr, name, s->helo);
		smtpd_reply(s,
		            "459 4.7.1 <%s>: client not authorized to "
		            "request ETRN",
		            name);
		return;
	}
	if ((d = policy_find_domain(cfg->policy, name)) == NULL) {
		smtpd_reply(s, "459 4.1.2 <%s>: not a domain we queue mail for",
		            name);
		return;
	}
	if (!smtpd_etrn_rate_ok(s)) {
		smtpd_reply(s, "458 4.7.0 Unable to queue messages: ETRN rate "
		               "limit exceeded, try again later");
		return;
	}
	stats.etrn++;
	/* one pass over the spool: the count is of pending messages */
	n = forward_flush(d->name);
	if (n == 0) {
		log_info("ETRN %s from unknown[%s]: no messages waiting",
		         d->name, s->addr);
		smtpd_reply(s, "251 2.0.0 No messages waiting for node %s",
		            d->name);
		return;
	}
	log_info("ETRN %s from unknown[%s]: flush n=%d", d->name, s->addr, n);
	smtpd_reply(s, "250 2.0.0 Queuing for node %s started", d->name);
}

static void
smtpd_cmd_starttls(struct smtpd_session *s, char *arg)
{
	if (s->tls) {
		smtpd_reply(s, "503 5.5.1 Error: TLS already active");
		return;
	}
	if (tls_server_ctx() == NULL) {
		smtpd_reply(s, "502 5.5.1 Error: command not implemented");
		return;
	}
	if (s->tx != NULL) {
		smtpd_reply(s, "503 5.5.1 Error: MAIL transaction in progress");
		return;
	}
	if ((s->ssl = tls_server_new(s->fd)) == NULL) {
		smtpd_reply(s, "454 4.7.0 TLS not available due to local "
		               "problem");
		return;
	}
	smtpd_reply(s, "220 2.0.0 Ready to start TLS");
	/*
	 * CVE-2011-0411: anything the client pipelined behind STARTTLS
	 * arrived in plaintext and must never be executed as if it came
	 * over TLS.  Discard it; forget HELO and any state.
	 */
	s->inlen = 0;
	s->helo[0] = '\0';
	s->esmtp = 0;
	s->state = S_TLS;
}

void
smtpd_tls_step(struct smtpd_session *s)
{
	char err[256];
	int want = 0, r;

	if (s->outlen > 0) {
		/* our 220 must be out, in plaintext, before the handshake */
		smtpd_flush(s);
		if (s->outlen > 0 || s->dead)
			return;
	}
	r = tls_handshake_step(s->ssl, &want, err, sizeof(err));
	if (r == 1) {
		s->tls = 1;
		tls_describe(s->ssl, s->tls_desc, sizeof(s->tls_desc));
		stats.tls_inbound++;
		log_info("Anonymous TLS connection established from "
		         "unknown[%s]: %s",
		         s->addr, s->tls_desc);
		s->state = S_CMD;
		ev_io_stop(backmxd.loop, &s->wio);
		ev_io_start(backmxd.loop, &s->rio);
		/* SSL may hold decrypted octets already */
		ev_feed_event(backmxd.loop, &s->rio, EV_READ);
		return;
	}
	if (r < 0) {
		log_info("SSL_accept error from unknown[%s]: %s", s->addr, err);
		s->dead = 1;
		return;
	}
	if (want == TLS_WANT_WRITE) {
		ev_io_stop(backmxd.loop, &s->rio);
		ev_io_start(backmxd.loop, &s->wio);
	} else {
		ev_io_stop(backmxd.loop, &s->wio);
		ev_io_start(backmxd.loop, &s->rio);
	}
}

/* ------------------------------------------------------------------ */
/* RSET, NOOP, QUIT, VRFY, HELP */

static void
smtpd_cmd_rset(struct smtpd_session *s, char *arg)
{
	smtpd_tx_reset(s);
	smtpd_reply(s, "250 2.0.0 Ok");
}

static void
smtpd_cmd_noop(struct smtpd_session *s, char *arg)
{
	smtpd_reply(s, "250 2.0.0 Ok");
}

static void
smtpd_cmd_quit(struct smtpd_session *s, char *arg)
{
	smtpd_reply(s, "221 2.0.0 Bye");
	s->close_after_flush = 1;
}

static void
smtpd_cmd_vrfy(struct smtpd_session *s, char *arg)
{
	smtpd_reply(s, "252 2.5.2 Cannot VRFY user, but will accept "
	               "message and attempt delivery");
}

static void
smtpd_cmd_help(struct smtpd_session *s, char *arg)
{
	smtpd_reply(s, "214 2.0.0 See RFC 5321; backmx is a backup MX");
}

/* ------------------------------------------------------------------ */
/* the command table */

/*
 * Where a session is in its dialogue when a command arrives (commands
 * run only in S_CMD; the other states do not read command lines):
 * before HELO/EHLO, greeted without a transaction, inside MAIL.
 */
enum smtpd_phase { SMTPD_PH_GREET, SMTPD_PH_HELO, SMTPD_PH_MAIL, SMTPD_PH_N };

#define SMTPD_NEED_HELO "503 5.5.1 Error: send HELO/EHLO first"
#define SMTPD_NEED_MAIL "503 5.5.1 Error: need MAIL command"
#define SMTPD_IN_MAIL "503 5.5.1 Error: MAIL transaction in progress"
#define SMTPD_NESTED "503 5.5.1 Error: nested MAIL command"

struct smtpd_cmd {
	const char *verb;
	int noarg;                      /* an argument: 501 Syntax: VERB */
	const char *refuse[SMTPD_PH_N]; /* per phase: the reply when not
	                                   allowed there, NULL: allowed */
	void (*run)(struct smtpd_session *, char *arg);
};

static const struct smtpd_cmd smtpd_commands[] = {
    {"EHLO", 0, {NULL, NULL, NULL}, smtpd_cmd_ehlo},
    {"HELO", 0, {NULL, NULL, NULL}, smtpd_cmd_helo},
    {"MAIL", 0, {SMTPD_NEED_HELO, NULL, SMTPD_NESTED}, smtpd_cmd_mail},
    {"RCPT", 0, {SMTPD_NEED_MAIL, SMTPD_NEED_MAIL, NULL}, smtpd_cmd_rcpt},
    {"DATA", 1, {SMTPD_NEED_MAIL, SMTPD_NEED_MAIL, NULL}, smtpd_cmd_data},
    /* BDAT reads the announced octets even when refused: it decides */
    {"BDAT", 0, {NULL, NULL, NULL}, smtpd_cmd_bdat},
    {"RSET", 1, {NULL, NULL, NULL}, smtpd_cmd_rset},
    {"NOOP", 0, {NULL, NULL, NULL}, smtpd_cmd_noop},
    {"QUIT", 1, {NULL, NULL, NULL}, smtpd_cmd_quit},
    {"VRFY", 0, {NULL, NULL, NULL}, smtpd_cmd_vrfy},
    {"HELP", 0, {NULL, NULL, NULL}, smtpd_cmd_help},
    {"ETRN", 0, {SMTPD_NEED_HELO, NULL, SMTPD_IN_MAIL}, smtpd_cmd_etrn},
    /* its refusals come in a fixed order: TLS state before MAIL */
    {"STARTTLS", 1, {NULL, NULL, NULL}, smtpd_cmd_starttls},
};

static enum smtpd_phase
smtpd_phase(const struct smtpd_session *s)
{
	if (s->tx != NULL)
		return SMTPD_PH_MAIL;
	return s->helo[0] != '\0' ? SMTPD_PH_HELO : SMTPD_PH_GREET;
}

void
smtpd_command(struct smtpd_session *s, char *line)
{
	const struct smtpd_cmd *c = NULL;
	char *arg;
	size_t vlen;

	s->n_cmds++;
	vlen = strcspn(line, " ");
	arg = line + vlen;
	if (*arg == ' ')
		*arg++ = '\0';
	for (size_t i = 0; i < sizeof(smtpd_commands) / sizeof(*smtpd_commands);
	     i++)
		if (smtpd_streq(line, smtpd_commands[i].verb)) {
			c = &smtpd_commands[i];
			break;
		}
	if (c == NULL) {
		s->nerrors++;
		smtpd_reply(s, "500 5.5.2 Error: command not recognized");
		return;
	}
	log_debug("unknown[%s]: %s in state %s", s->addr, c->verb,
	          smtpd_state_name(s->state));
	if (c->noarg && *arg != '\0') {
		smtpd_reply(s, "501 5.5.4 Syntax: %s", c->verb);
		return;
	}
	if (s->milter_denied && c->run != smtpd_cmd_quit) {
		/* a milter refused the connection (RFC 5321 3.1) */
		s->nerrors++;
		smtpd_reply(s, "503 5.7.0 Error: access denied for unknown[%s]",
		            s->addr);
		return;
	}
	if (c->refuse[smtpd_phase(s)] != NULL) {
		smtpd_reply(s, "%s", c->refuse[smtpd_phase(s)]);
		return;
	}
	c->run(s, arg);
}
