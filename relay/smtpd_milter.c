/*
 * smtpd_milter.c - the inbound session's side of the milters (milter.h):
 * the milter session opened at the client's connect, and each stage's
 * answer applied at its command - connect (554 banner then 503 to all
 * but QUIT, or 421 and close), HELO/EHLO, MAIL, RCPT (that recipient
 * only), DATA: the milter's reply (its own text with SMFIR_REPLYCODE) is
 * the command's reply, and the session waits (smtpd_pause) while a
 * milter thinks.  At the end of data the received message (held in a
 * temporary file by smtpd_body.c) goes to milter_message; its verdict is
 * applied (reject, tempfail, discard, quarantine), the recipient changes
 * made to the transaction, the header and body changes written into the
 * spool (milter_apply), then smtpd_tx_commit.
 *
 * Called by smtpd.c (connect), smtpd_cmd.c (HELO, MAIL, RCPT),
 * smtpd_body.c (DATA, end of data); calls milter.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_filter.h"
#include "log.h"
#include "smtpd_int.h"

/* smtpd_rcpt_edit - a milter's recipient changes; the count left */
static int
smtpd_rcpt_edit(struct smtpd_tx *tx, const struct milter_result *res)
{
	char addr[POLICY_PATH_MAX + 1];

	for (const struct milter_mod *m = res->mods; m != NULL; m = m->next) {
		size_t l;

		if (m->kind != MILTER_MOD_ADDRCPT &&
		    m->kind != MILTER_MOD_DELRCPT)
			continue;
		snprintf(addr, sizeof(addr), "%s",
		         m->name + (m->name[0] == '<'));
		l = strlen(addr);
		if (l > 0 && addr[l - 1] == '>')
			addr[--l] = '\0';
		if (m->kind == MILTER_MOD_DELRCPT) {
			for (int i = 0; i < tx->nrcpt; i++)
				if (!strcasecmp(tx->rcpt[i].address, addr)) {
					log_msg(tx->id,
					        "milter: removed "
					        "recipient <%s>",
					        addr);
					free(tx->rcpt[i].address);
					free(tx->rcpt[i].orcpt);
					free(tx->rcpt[i].route);
					memmove(tx->rcpt + i, tx->rcpt + i + 1,
					        (tx->nrcpt - i - 1) *
					            sizeof(*tx->rcpt));
					tx->nrcpt--;
					break;
				}
			continue;
		}
		if (l == 0 || strchr(addr, '@') == NULL)
			continue;
		if (tx->nrcpt == tx->rcpt_cap) {
			int cap = tx->rcpt_cap ? tx->rcpt_cap * 2 : 4;
			struct smtpd_rcpt *p =
			    realloc(tx->rcpt, cap * sizeof(*p));

			if (p == NULL)
				continue;
			tx->rcpt = p;
			tx->rcpt_cap = cap;
		}
		memset(&tx->rcpt[tx->nrcpt], 0, sizeof(*tx->rcpt));
		if ((tx->rcpt[tx->nrcpt].address = strdup(addr)) == NULL)
			continue;
		tx->nrcpt++;
		log_msg(tx->id, "milter: added recipient <%s>", addr);
	}
	return tx->nrcpt;
}

/* smtpd_milter_chgfrom - SMFIR_CHGFROM: the new envelope sender, if
 * it is a path we would have taken in MAIL FROM (else it is ignored) */
static int
smtpd_milter_chgfrom(struct smtpd_tx *tx, const char *sender)
{
	char buf[POLICY_PATH_MAX + 3];
	struct policy_path path;
	struct result res;
	size_t end;
	char *n;

	memset(&res, 0, sizeof(res));
	snprintf(buf, sizeof(buf), "<%s>", sender);
	if (policy_parse_path(buf, strlen(buf),
	                      tx->smtputf8 ? POLICY_PARSE_SMTPUTF8 : 0, &path,
	                      &end, &res) < 0 ||
	    buf[end] != '\0' || path.kind == POLICY_PATH_POSTMASTER) {
		log_msg(tx->id, "milter: sender change to <%.200s> ignored: %s",
		        sender, res.text);
		return 0;
	}
	n = strdup(path.kind == POLICY_PATH_NULL ? "" : path.address);
	if (n == NULL)
		return -1;
	log_msg(tx->id, "milter: sender changed from <%s> to <%s>", tx->sender,
	        n);
	free(tx->sender);
	tx->sender = n;
	return 0;
}

/* smtpd_milter_cb - the milters' verdict on the message */
static void
smtpd_milter_cb(void *arg, struct milter_result *res)
{
	struct smtpd_session *s = arg;
	struct smtpd_tx *tx = s->tx;
	const char *cmd = tx->bdat ? "BDAT" : "END-OF-MESSAGE";
	uint64_t size = 0;

	tx->milter = NULL;
	s->state = S_CMD;
	if (res == NULL) {
		smtpd_reply(s, "451 4.3.0 Error: local error in processing");
		goto drop;
	}
	if (res->verdict == MILTER_REJECT || res->verdict == MILTER_TEMPFAIL) {
		log_info(
		    "%s: milter-reject: %s from unknown[%s]: %s; from=<%s> "
		    "helo=<%s>; filter=%s",
		    tx->id, cmd, s->addr, res->reply, tx->sender, s->helo,
		    res->why);
		smtpd_reply(s, "%s", res->reply);
		goto drop;
	}
	if (res->verdict == MILTER_DISCARD) {
		log_info("%s: milter-discard: %s from unknown[%s]: discarded; "
		         "from=<%s>; filter=%s",
		         tx->id, cmd, s->addr, tx->sender, res->why);
		smtpd_reply(s, "250 2.0.0 Ok: queued as %s", tx->id);
		goto drop;
	}
	if (smtpd_rcpt_edit(tx, res) == 0) {
		log_info("%s: milter-reject: %s from unknown[%s]: no "
		         "recipients left; "
		         "from=<%s>; filter=milter",
		         tx->id, cmd, s->addr, tx->sender);
		smtpd_reply(s, "554 5.7.1 Error: all recipients rejected");
		goto drop;
	}
	if (res->chgfrom && smtpd_milter_chgfrom(tx, res->sender) < 0) {
		smtpd_reply(s, "451 4.3.0 Error: local error in processing");
		goto drop;
	}
	/* the copy with the edits of all but the last milter, if any */
	if (milter_apply(res, res->message ? res->message : tx->milter_fp,
	                 tx->w, &size) < 0) {
		tx->spool_failed = 1;
		tx->spool_err = spool_errno(backmxd.spool);
	}
	tx->size = size;
	if (res->verdict == MILTER_QUARANTINE) {
		tx->held = 1;
		log_info("%s: milter-hold: %s from unknown[%s]: %s; from=<%s>; "
		         "filter=%s",
		         tx->id, cmd, s->addr, res->quarantine, tx->sender,
		         res->why);
	}
	fclose(tx->milter_fp);
	tx->milter_fp = NULL;
	milter_result_free(res);
	smtpd_tx_commit(s);
	if (s->state != S_COMMIT)
		smtpd_resume(s);
	return;
drop:
	milter_result_free(res);
	smtpd_tx_reset(s);
	smtpd_resume(s);
}

/* smtpd_milter_start - hand the message to the milters; wait */
void
smtpd_milter_start(struct smtpd_session *s)
{
	struct smtpd_tx *tx = s->tx;
	struct milter_msg m;

	memset(&m, 0, sizeof(m));
	m.queue_id = tx->id;
	m.sender = tx->sender;
	m.data = tx->milter_fp;
	if (fflush(tx->milter_fp) != 0 ||
	    milter_message(s->milters, &m, smtpd_milter_cb, s) < 0) {
		smtpd_reply(s, "451 4.3.0 Error: local error in processing");
		smtpd_tx_reset(s);
		return;
	}
	tx->milter = s->milters;
	s->state = S_FILTER;
	ev_io_stop(backmxd.loop, &s->rio);
}

/* ------------------------------------------------------------------ */
/* the command stages */

/* smtpd_milter_refused - log and reply a stage's refusal */
static void
smtpd_milter_refused(struct smtpd_session *s, const char *where,
                     const struct milter_reply *r, const char *what)
{
	log_info("NOQUEUE: milter-reject: %s from unknown[%s]: %s; %sproto=%s "
	         "helo=<%s>; filter=%s",
	         where, s->addr, r->reply, what, s->esmtp ? "ESMTP" : "SMTP",
	         where[1] == 'H' ? s->mh_helo : s->helo, r->why);
	smtpd_reply(s, "%s", r->reply);
	if (r->close) {
		/* a 421 from the milter: the session ends */
		s->close_after_flush = 1;
	}
}

/* smtpd_milter_pause - wait for the stage's answer */
static void
smtpd_milter_pause(struct smtpd_session *s)
{
	s->milter_wait = 1;
	smtpd_pause(s);
}

/* smtpd_milter_resume - the answer was applied: pipelined input, read */
static void
smtpd_milter_resume(struct smtpd_session *s)
{
	s->milter_wait = 0;
	smtpd_resume(s);
}

/* connect */

static void
smtpd_milter_connect_reply(struct smtpd_session *s,
                           const struct milter_reply *r)
{
	const char *host = backmxd.cfg->hostname;

	if (r->verdict != MILTER_REJECT && r->verdict != MILTER_TEMPFAIL) {
		smtpd_greet(s);
		return;
	}
	log_info("NOQUEUE: milter-reject: CONNECT from unknown[%s]: %s; "
	         "proto=SMTP; filter=%s",
	         s->addr, r->reply, r->why);
	stats.refused_other++;
	s->state = S_CMD;
	if (r->verdict == MILTER_TEMPFAIL) {
		/* 421 (the milter's own text if it gave one), then close */
		if (r->custom)
			smtpd_reply(s, "%s", r->reply);
		else
			smtpd_reply(s,
			            "421 4.7.0 %s Service unavailable - try "
			            "again later",
			            host);
		s->close_after_flush = 1;
		smtpd_flush(s);
		if (s->outlen == 0)
			s->dead = 1;
		smtpd_done(s);
		return;
	}
	/* 554 instead of the banner, then 503 to every command but QUIT
	 * (RFC 5321 3.1); the milter's own text if it gave one */
	if (r->custom)
		smtpd_reply(s, "554%s", r->reply + 3);
	else
		smtpd_reply(s, "554 5.7.1 %s ESMTP not accepting connections",
		            host);
	s->milter_denied = 1;
	s->greeted = 1;
	smtpd_flush(s);
	if (!smtpd_done(s))
		ev_io_start(backmxd.loop, &s->rio);
}

static void
smtpd_milter_connect_cb(void *arg, const struct milter_reply *r)
{
	smtpd_milter_connect_reply(arg, r);
}

int
smtpd_milter_connect(struct smtpd_session *s)
{
	struct milter_client cl;
	struct milter_reply r;

	if (backmxd.cfg->filter->nmilter == 0)
		return 0;
	memset(&r, 0, sizeof(r));
	memset(&cl, 0, sizeof(cl));
	cl.client_addr = s->addr;
	cl.client_name = "unknown";
	cl.client_port = s->port;
	cl.client_family = s->ss.ss_family;
	if ((s->milters = milter_session_new(&cl)) == NULL) {
		r.verdict = MILTER_TEMPFAIL;
		r.custom = 0;
		snprintf(r.reply, sizeof(r.reply), "421 4.3.0 out of memory");
		snprintf(r.why, sizeof(r.why), "milter: out of memory");
		smtpd_milter_connect_reply(s, &r);
		return 1;
	}
	if (milter_stage(s->milters, MILTER_ST_CONNECT, NULL,
	                 smtpd_milter_connect_cb, s, &r) == 1) {
		s->state = S_FILTER; /* nothing is read meanwhile */
		return 1;
	}
	if (r.verdict != MILTER_REJECT && r.verdict != MILTER_TEMPFAIL)
		return 0;
	smtpd_milter_connect_reply(s, &r);
	return 1;
}

/* HELO, EHLO */

static int
smtpd_milter_helo_reply(struct smtpd_session *s, const struct milter_reply *r)
{
	if (r->verdict != MILTER_REJECT && r->verdict != MILTER_TEMPFAIL)
		return 0;
	smtpd_milter_refused(s, s->mh_esmtp ? "EHLO" : "HELO", r, "");
	/* not greeted: MAIL needs a HELO/EHLO the milters took */
	smtpd_tx_reset(s);
	s->helo[0] = '\0';
	return 1;
}

static void
smtpd_milter_helo_cb(void *arg, const struct milter_reply *r)
{
	struct smtpd_session *s = arg;

	if (!smtpd_milter_helo_reply(s, r))
		smtpd_hello_done(s, s->mh_helo, s->mh_esmtp);
	smtpd_milter_resume(s);
}

int
smtpd_milter_helo(struct smtpd_session *s, const char *name, int esmtp)
{
	struct milter_reply r;

	snprintf(s->mh_helo, sizeof(s->mh_helo), "%s", name);
	s->mh_esmtp = esmtp;
	milter_session_tls(s->milters, s->tls ? s->tls_desc : NULL);
	if (milter_stage(s->milters, MILTER_ST_HELO, name, smtpd_milter_helo_cb,
	                 s, &r) == 1) {
		smtpd_milter_pause(s);
		return 1;
	}
	return smtpd_milter_helo_reply(s, &r);
}

/* MAIL */

static int
smtpd_milter_mail_reply(struct smtpd_session *s, struct smtpd_tx *tx,
                        const struct milter_reply *r)
{
	char what[600];

	if (r->verdict != MILTER_REJECT && r->verdict != MILTER_TEMPFAIL)
		return 0;
	snprintf(what, sizeof(what), "from=<%.500s> ", tx->sender);
	smtpd_milter_refused(s, "MAIL", r, what);
	smtpd_tx_free(tx);
	milter_tx_end(s->milters);
	return 1;
}

static void
smtpd_milter_mail_cb(void *arg, const struct milter_reply *r)
{
	struct smtpd_session *s = arg;
	struct smtpd_tx *tx = s->mh_tx;

	s->mh_tx = NULL;
	if (!smtpd_milter_mail_reply(s, tx, r))
		smtpd_mail_done(s, tx);
	smtpd_milter_resume(s);
}

int
smtpd_milter_mail(struct smtpd_session *s, struct smtpd_tx *tx)
{
	struct milter_reply r;

	if (milter_stage(s->milters, MILTER_ST_MAIL, tx->sender,
	                 smtpd_milter_mail_cb, s, &r) == 1) {
		s->mh_tx = tx;
		smtpd_milter_pause(s);
		return 1;
	}
	return smtpd_milter_mail_reply(s, tx, &r);
}

/* RCPT */

static int
smtpd_milter_rcpt_reply(struct smtpd_session *s, const char *rcpt,
                        const struct milter_reply *r)
{
	char what[1200];

	if (r->verdict != MILTER_REJECT && r->verdict != MILTER_TEMPFAIL)
		return 0;
	snprintf(what, sizeof(what), "from=<%.500s> to=<%.500s> ",
	         s->tx != NULL ? s->tx->sender : "", rcpt);
	smtpd_milter_refused(s, "RCPT", r, what);
	return 1;
}

static void
smtpd_milter_rcpt_cb(void *arg, const struct milter_reply *r)
{
	struct smtpd_session *s = arg;

	if (s->tx != NULL &&
	    !smtpd_milter_rcpt_reply(s, s->mh_rcpt->address, r))
		smtpd_rcpt_add_now(s, s->mh_rcpt, s->mh_notify, s->mh_orcpt);
	free(s->mh_rcpt);
	free(s->mh_orcpt);
	s->mh_rcpt = NULL;
	s->mh_orcpt = NULL;
	smtpd_milter_resume(s);
}

int
smtpd_milter_rcpt(struct smtpd_session *s, const struct policy_rcpt *rp,
                  int notify, const char *orcpt)
{
	struct milter_reply r;

	if (milter_stage(s->milters, MILTER_ST_RCPT, rp->address,
	                 smtpd_milter_rcpt_cb, s, &r) == 1) {
		if ((s->mh_rcpt = malloc(sizeof(*rp))) != NULL)
			*s->mh_rcpt = *rp;
		s->mh_notify = notify;
		s->mh_orcpt = orcpt != NULL ? strdup(orcpt) : NULL;
		if (s->mh_rcpt == NULL ||
		    (orcpt != NULL && s->mh_orcpt == NULL)) {
			/* the answer still comes; it finds the session
			 * without a transaction and refuses nothing */
			smtpd_reply(s, "452 4.3.0 Error: out of memory");
			smtpd_tx_reset(s);
		}
		smtpd_milter_pause(s);
		return 1;
	}
	return smtpd_milter_rcpt_reply(s, rp->address, &r);
}

/* DATA */

static int
smtpd_milter_data_reply(struct smtpd_session *s, const struct milter_reply *r)
{
	char what[600];

	if (r->verdict != MILTER_REJECT && r->verdict != MILTER_TEMPFAIL)
		return 0;
	snprintf(what, sizeof(what), "from=<%.500s> ", s->tx->sender);
	smtpd_milter_refused(s, "DATA", r, what);
	smtpd_tx_reset(s); /* the transaction ends */
	return 1;
}

static void
smtpd_milter_data_cb(void *arg, const struct milter_reply *r)
{
	struct smtpd_session *s = arg;

	if (s->tx != NULL && !smtpd_milter_data_reply(s, r))
		smtpd_data_go(s);
	smtpd_milter_resume(s);
}

int
smtpd_milter_data(struct smtpd_session *s)
{
	struct milter_reply r;

	if (milter_stage(s->milters, MILTER_ST_DATA, NULL, smtpd_milter_data_cb,
	                 s, &r) == 1) {
		smtpd_milter_pause(s);
		return 1;
	}
	return smtpd_milter_data_reply(s, &r);
}
