/*
 * smtpd_milter.c - the inbound session's side of the milters: the
 * received message (held in a temporary file by smtpd_body.c) and its
 * envelope handed to milter_run(), the session paused meanwhile; the
 * verdict applied (reject, tempfail, discard, quarantine), the recipient
 * changes made to the transaction, the header and body changes written
 * into the spool (milter_apply), then smtpd_tx_commit.
 *
 * Called by smtpd_body.c at the end of data; calls milter.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "smtpd_int.h"

/* smtpd_rcpt_edit - a milter's recipient changes; the count left */
static int
smtpd_rcpt_edit(struct smtpd_tx *tx, const struct milter_result *res)
{
	char addr[POLICY_PATH_MAX + 1];

	/* rejected at RCPT by a milter: gone */
	for (int i = tx->nrcpt - 1; i >= 0; i--)
		if (res->rcpt_rejected != NULL && res->rcpt_rejected[i]) {
			log_msg(tx->id, "milter-reject: RCPT <%s>",
			        tx->rcpt[i].address);
			free(tx->rcpt[i].address);
			free(tx->rcpt[i].orcpt);
			free(tx->rcpt[i].route);
			memmove(tx->rcpt + i, tx->rcpt + i + 1,
			        (tx->nrcpt - i - 1) * sizeof(*tx->rcpt));
			tx->nrcpt--;
		}
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
	const char **rcpt = calloc(tx->nrcpt + 1, sizeof(*rcpt));

	memset(&m, 0, sizeof(m));
	if (rcpt == NULL || fflush(tx->milter_fp) != 0) {
		free(rcpt);
		smtpd_reply(s, "451 4.3.0 Error: local error in processing");
		smtpd_tx_reset(s);
		return;
	}
	for (int i = 0; i < tx->nrcpt; i++)
		rcpt[i] = tx->rcpt[i].address;
	m.client_addr = s->addr;
	m.client_name = "unknown";
	m.client_port = s->port;
	m.client_family = s->ss.ss_family;
	m.helo = s->helo;
	m.queue_id = tx->id;
	m.sender = tx->sender;
	m.rcpt = rcpt;
	m.nrcpt = tx->nrcpt;
	m.tls_version = s->tls ? s->tls_desc : NULL;
	m.data = tx->milter_fp;
	tx->milter = milter_run(&m, smtpd_milter_cb, s);
	/* the milter run copied m, not the array: keep it with the tx */
	tx->milter_rcpt = rcpt;
	if (tx->milter == NULL) {
		smtpd_reply(s, "451 4.3.0 Error: local error in processing");
		smtpd_tx_reset(s);
		return;
	}
	s->state = S_FILTER;
	ev_io_stop(backmxd.loop, &s->rio);
}
