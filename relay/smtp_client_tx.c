/*
 * smtp_client_tx.c - one transaction on a ready outbound connection:
 * what this server can take (SIZE, 8BITMIME, SMTPUTF8), the pipelined
 * RSET/MAIL/RCPT.../DATA with their DSN parameters, replies matched by
 * counting into per-recipient results, the body streamed from the spool
 * (smtp_reply.c's transformation), the final dot.  Called through
 * smtp_client_send() by fwd_session.c and by smtp_client.c's event handler.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_client_int.h"

static void
client_tx_finish(struct smtp_client *c, const struct result *last)
{
	struct smtp_client_tx *tx = c->tx;
	struct result r = *last;
	int i;

	for (i = 0; i < tx->nrcpt; i++)
		if (tx->res[i].code == 0) {
			tx->res[i] = r;
			if (tx->remote != NULL)
				tx->remote[i] = 1;
		}
	free(c->cmds);
	c->cmds = NULL;
	c->tx = NULL;
	c->need_rset = 1;
	c->state = C_IDLE;
	c->phase = "idle";
	ev_timer_stop(c->loop, &c->timer);
	c->cb(c->arg, c, &r);
}

/* xtext - encode s for a DSN parameter when it is not valid xtext */
static void
client_xtext(const char *s, char *out, size_t outlen)
{
	size_t o = 0;

	if (policy_xtext_valid(s, strlen(s))) {
		snprintf(out, outlen, "%s", s);
		return;
	}
	for (; *s != '\0' && o + 4 < outlen; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch < '!' || ch > '~' || ch == '+' || ch == '=')
			o += (size_t)snprintf(out + o, outlen - o, "+%02X", ch);
		else
			out[o++] = (char)ch;
	}
	out[o] = '\0';
}

static void
client_send_cmd(struct smtp_client *c, int i)
{
	const struct smtp_client_tx *tx = c->tx;
	const struct spool_envelope *e = tx->env;
	char params[1200], x[800];
	size_t o = 0;

	params[0] = '\0';
	switch (c->cmds[i]) {
	case CMD_RSET:
		smtp_client_printf(c, "RSET");
		break;
	case CMD_MAIL:
		if (c->caps & SMTP_CAP_SIZE)
			o += (size_t)snprintf(params + o, sizeof(params) - o,
			                      " SIZE=%llu",
			                      (unsigned long long)e->size);
		if (e->body != SPOOL_BODY_7BIT)
			o += (size_t)snprintf(params + o, sizeof(params) - o,
			                      " BODY=8BITMIME");
		if (e->smtputf8)
			o += (size_t)snprintf(params + o, sizeof(params) - o,
			                      " SMTPUTF8");
		if (c->caps & SMTP_CAP_DSN) {
			if (e->ret == SPOOL_RET_FULL)
				o += (size_t)snprintf(params + o,
				                      sizeof(params) - o,
				                      " RET=FULL");
			else if (e->ret == SPOOL_RET_HDRS)
				o += (size_t)snprintf(params + o,
				                      sizeof(params) - o,
				                      " RET=HDRS");
			if (e->envid != NULL && e->envid[0] != '\0') {
				client_xtext(e->envid, x, sizeof(x));
				snprintf(params + o, sizeof(params) - o,
				         " ENVID=%s", x);
			}
		}
		smtp_client_printf(c, "MAIL FROM:<%s>%s", e->sender, params);
		break;
	case CMD_RCPT: {
		const struct spool_rcpt *r =
		    &e->rcpt[tx->rcpt[i - c->rcpt_base]];

		if ((c->caps & SMTP_CAP_DSN) && r->notify != 0) {
			int n = r->notify;

			if (n & SPOOL_NOTIFY_NEVER)
				o += (size_t)snprintf(params, sizeof(params),
				                      " NOTIFY=NEVER");
			else
				o += (size_t)snprintf(
				    params, sizeof(params),
				    " NOTIFY=%s%s%s%s%s",
				    n & SPOOL_NOTIFY_SUCCESS ? "SUCCESS" : "",
				    (n & SPOOL_NOTIFY_SUCCESS) &&
				            (n & (SPOOL_NOTIFY_FAILURE |
				                  SPOOL_NOTIFY_DELAY))
				        ? ","
				        : "",
				    n & SPOOL_NOTIFY_FAILURE ? "FAILURE" : "",
				    (n & SPOOL_NOTIFY_FAILURE) &&
				            (n & SPOOL_NOTIFY_DELAY)
				        ? ","
				        : "",
				    n & SPOOL_NOTIFY_DELAY ? "DELAY" : "");
		}
		if ((c->caps & SMTP_CAP_DSN) && r->orcpt != NULL) {
			client_xtext(r->orcpt, x, sizeof(x));
			snprintf(params + o, sizeof(params) - o, " ORCPT=%s",
			         x);
		}
		smtp_client_printf(c, "RCPT TO:<%s>%s", r->address, params);
		break;
	}
	case CMD_DATA:
		smtp_client_printf(c, "DATA");
		break;
	}
	c->nsent = i + 1;
}

/* client_send_more - send what may go now: all when pipelining */
static void
client_send_more(struct smtp_client *c)
{
	if (c->caps & SMTP_CAP_PIPELINING) {
		while (c->nsent < c->ncmd)
			client_send_cmd(c, c->nsent);
	} else if (c->nsent == c->nreplied && c->nsent < c->ncmd)
		client_send_cmd(c, c->nsent);
	smtp_client_timeout(c, c->command_timeout);
}

/* smtp_client_body_fill - move body chunks into the output buffer */
int
smtp_client_body_fill(struct smtp_client *c)
{
	while (!c->body_done && c->olen - c->ooff < OBUF_LOW) {
		const void *data;
		size_t len;
		int r;

		r = spool_body_read(c->tx->spool, c->tx->env->id, c->chunk,
		                    &data, &len);
		if (r < 0)
			return -1;
		if (r == 0) {
			if (smtp_client_out_reserve(c, 8) < 0)
				return -1;
			c->olen += smtp_client_body_end(&c->body_state,
			                                c->obuf + c->olen);
			c->body_done = 1;
			break;
		}
		c->chunk++;
		if (smtp_client_out_reserve(c, 2 * len + 2) < 0)
			return -1;
		c->olen += smtp_client_body_encode(&c->body_state, data, len,
		                                   c->obuf + c->olen);
	}
	return 0;
}

/* smtp_client_tx_reply - one reply to RSET/MAIL/RCPT/DATA or the dot */
int
smtp_client_tx_reply(struct smtp_client *c, const struct smtp_reply *rep,
                     const struct result *res)
{
	struct result r = *res;
	int cls = rep->code / 100;

	switch (c->state) {
	case C_TX: {
		int i = c->nreplied++;
		enum cmd_kind k = c->cmds[i];

		if (k == CMD_MAIL && cls != 2) {
			c->mail_failed = 1;
			c->mail_res = r;
		} else if (k == CMD_RCPT) {
			struct result *rr = &c->tx->res[i - c->rcpt_base];

			if (c->mail_failed)
				*rr = c->mail_res;
			else if (cls == 2)
				c->accepted++;
			else
				*rr = r;
			if (rr->code != 0 && c->tx->remote != NULL)
				c->tx->remote[i - c->rcpt_base] = 1;
		} else if (k == CMD_DATA) {
			if (rep->code == 354 &&
			    (c->accepted == 0 || c->mail_failed)) {
				/* RFC 2920: a lone dot ends the empty data */
				smtp_client_printf(c, ".");
				c->discard_dot = 1;
				c->state = C_DOT;
				c->phase = "sending the end of data";
				smtp_client_timeout(c, c->data_timeout);
				return 0;
			}
			if (rep->code == 354) {
				c->state = C_BODY;
				c->phase = "sending message body";
				c->chunk = 0;
				c->body_state = 0;
				c->body_done = 0;
				if (smtp_client_body_fill(c) < 0) {
					smtp_client_fail(c, "4.3.0",
					                 "cannot read "
					                 "the message from the "
					                 "spool");
					return 1;
				}
				smtp_client_timeout(c, c->command_timeout);
				return 0;
			}
			if (c->mail_failed)
				r = c->mail_res;
			else if (cls == 2) {
				/* only the reply to the dot delivers */
				smtp_client_fail(c, "4.5.0",
				                 "host %s said %d %s in "
				                 "reply to DATA",
				                 c->relay, r.code, r.text);
				return 1;
			}
			client_tx_finish(c, &r);
			return 1;
		}
		if (c->nreplied == c->ncmd)
			return 0; /* not reached: DATA is last */
		if (!(c->caps & SMTP_CAP_PIPELINING)) {
			/* without pipelining, stop early when pointless */
			if (c->mail_failed) {
				client_tx_finish(c, &c->mail_res);
				return 1;
			}
			if (c->cmds[c->nreplied] == CMD_DATA &&
			    c->accepted == 0) {
				client_tx_finish(c, &r);
				return 1;
			}
			client_send_more(c);
		}
		return 0;
	}
	case C_DOT:
		if (c->discard_dot) {
			c->discard_dot = 0;
			client_tx_finish(c, c->mail_failed ? &c->mail_res : &r);
			return 1;
		}
		client_tx_finish(c, &r);
		return 1;
	default:
		return 0; /* not reached: smtp_client.c sends only these */
	}
}

int
smtp_client_send(struct smtp_client *c, struct smtp_client_tx *tx)
{
	const struct spool_envelope *e = tx->env;
	struct result fail;
	int i, n = 0;

	c->uses++;
	memset(tx->res, 0, sizeof(*tx->res) * (size_t)tx->nrcpt);
	if (tx->remote != NULL)
		memset(tx->remote, 0, sizeof(*tx->remote) * (size_t)tx->nrcpt);
	fail.code = 0;
	if ((c->caps & SMTP_CAP_SIZE) && c->max_size > 0 &&
	    e->size > c->max_size)
		result_set(&fail, 552, "5.3.4",
		           "message size %llu exceeds "
		           "size limit %llu of server %s",
		           (unsigned long long)e->size, c->max_size, c->relay);
	else if (e->body == SPOOL_BODY_BINARYMIME)
		result_set(&fail, 554, "5.6.3",
		           "binary content cannot be "
		           "relayed over DATA to %s",
		           c->relay);
	else if (e->body == SPOOL_BODY_8BITMIME &&
	         !(c->caps & SMTP_CAP_8BITMIME))
		result_set(&fail, 554, "5.6.3",
		           "8-bit content, but server %s "
		           "does not support 8BITMIME",
		           c->relay);
	else if (e->smtputf8 && !(c->caps & SMTP_CAP_SMTPUTF8))
		result_set(&fail, 553, "5.6.7",
		           "message needs SMTPUTF8, but "
		           "server %s does not support it",
		           c->relay);
	if (fail.code != 0) {
		for (i = 0; i < tx->nrcpt; i++)
			tx->res[i] = fail;
		return -1;
	}
	c->cmds = calloc((size_t)tx->nrcpt + 3, sizeof(*c->cmds));
	if (c->cmds == NULL) {
		result_set(&fail, 451, "4.3.0", "out of memory");
		for (i = 0; i < tx->nrcpt; i++)
			tx->res[i] = fail;
		return -1;
	}
	if (c->need_rset)
		c->cmds[n++] = CMD_RSET;
	c->cmds[n++] = CMD_MAIL;
	c->rcpt_base = n;
	for (i = 0; i < tx->nrcpt; i++)
		c->cmds[n++] = CMD_RCPT;
	c->cmds[n++] = CMD_DATA;
	c->ncmd = n;
	c->nsent = c->nreplied = 0;
	c->accepted = 0;
	c->mail_failed = 0;
	c->discard_dot = 0;
	c->tx = tx;
	c->state = C_TX;
	c->phase = "sending MAIL FROM";
	client_send_more(c);
	smtp_client_watch(c);
	return 0;
}
