/*
 * smtpd_body.c - DATA and BDAT in the inbound ESMTP session: the 354 or
 * the chunk, the octets through the DATA reader (smtpd_data.c) or the
 * BDAT counter, our Received field, streaming into the spool writer (or
 * a temporary file while milters are configured), the end-of-data
 * verdict (smuggling, size, line length, mail loop), then the spool
 * commit whose 250 waits for smtpd.c's group commit.
 *
 * Called by smtpd_cmd.c's table (DATA, BDAT), smtpd.c's reader
 * (smtpd_data_input) and smtpd_milter.c (smtpd_tx_commit once the
 * milters answered).
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "config_filter.h"
#include "forward.h"
#include "log.h"
#include "mirror.h"
#include "smtpd_int.h"

/* smtpd_emit_flush - append the staged octets to the spool writer */
static void
smtpd_emit_flush(struct smtpd_tx *tx)
{
	if (tx->emitlen == 0)
		return;
	if (tx->milter_fp != NULL && !tx->spool_failed && !tx->too_big) {
		/* kept aside for the milters; spooled once they answered */
		if (fwrite(tx->emit, 1, tx->emitlen, tx->milter_fp) !=
		    tx->emitlen) {
			tx->spool_failed = 1;
			tx->spool_err = SPOOL_EIO;
		}
	} else if (tx->w != NULL && !tx->spool_failed && !tx->too_big) {
		if (spool_writer_append(tx->w, tx->emit, tx->emitlen) < 0) {
			tx->spool_failed = 1;
			tx->spool_err = spool_errno(backmxd.spool);
		}
	}
	tx->emitlen = 0;
}

/* smtpd_emit - message octets from the DATA/BDAT reader */
static void
smtpd_emit(void *arg, const char *p, size_t n)
{
	struct smtpd_tx *tx = arg;
	const struct config *cfg = backmxd.cfg;

	policy_hdrscan_feed(&tx->hs, p, n);
	tx->size += n;
	if (cfg->max_size > 0 && tx->size > cfg->max_size)
		tx->too_big = 1; /* our Received header is not counted */
	if (tx->too_big || tx->spool_failed)
		return;
	while (n > 0) {
		size_t room = sizeof(tx->emit) - tx->emitlen;
		size_t k = n < room ? n : room;

		memcpy(tx->emit + tx->emitlen, p, k);
		tx->emitlen += k;
		p += k;
		n -= k;
		if (tx->emitlen == sizeof(tx->emit))
			smtpd_emit_flush(tx);
	}
}

/* smtpd_received - the trace field we prepend (RFC 5321 4.4) */
static int
smtpd_received(struct smtpd_session *s, struct smtpd_tx *tx, char *buf,
               size_t len)
{
	const struct config *cfg = backmxd.cfg;
	char date[64], with[32], tlsc[160] = "",
	                         forc[POLICY_PATH_MAX + 16] = "";
	time_t now = time(NULL);
	struct tm tm;

	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	snprintf(with, sizeof(with), "%s%s%s",
	         tx->smtputf8 ? "UTF8SMTP"
	         : s->esmtp   ? "ESMTP"
	                      : "SMTP",
	         s->tls ? "S" : "", "");
	if (s->tls)
		snprintf(tlsc, sizeof(tlsc), "\r\n\t(using %s)", s->tls_desc);
	if (tx->nrcpt == 1)
		snprintf(forc, sizeof(forc), "\r\n\tfor <%s>",
		         tx->rcpt[0].address);
	return snprintf(
	    buf, len,
	    "Received: from %s ([%s%s])\r\n\tby %s (backmx) with %s "
	    "id %s%s%s;\r\n\t%s\r\n",
	    s->helo, strchr(s->addr, ':') != NULL ? "IPv6:" : "", s->addr,
	    cfg->hostname, with, tx->id, tlsc, forc, date);
}

/* smtpd_tx_start - open the spool writer, write our Received field */
static int
smtpd_tx_start(struct smtpd_session *s)
{
	struct smtpd_tx *tx = s->tx;
	char hdr[1024];
	int n;

	policy_hdrscan_init(&tx->hs, backmxd.cfg->hostname);
	memset(&tx->data, 0, sizeof(tx->data));
	tx->w = spool_writer_new(backmxd.spool);
	if (tx->w == NULL) {
		tx->spool_failed = 1;
		tx->spool_err = spool_errno(backmxd.spool);
		return -1;
	}
	snprintf(tx->id, sizeof(tx->id), "%s", spool_writer_id(tx->w));
	if (s->milters != NULL && (tx->milter_fp = tmpfile()) == NULL) {
		tx->spool_failed = 1;
		tx->spool_err = SPOOL_EIO;
	}
	n = smtpd_received(s, tx, hdr, sizeof(hdr));
	if (n > 0 && (size_t)n < sizeof(hdr))
		tx->hdrlen = n;
	if (tx->hdrlen > 0 && spool_writer_append(tx->w, hdr, n) < 0) {
		tx->spool_failed = 1;
		tx->spool_err = spool_errno(backmxd.spool);
	}
	return 0;
}

void
smtpd_cmd_data(struct smtpd_session *s, char *arg)
{
	struct smtpd_tx *tx = s->tx;

	if (tx->nrcpt == 0) {
		smtpd_reply(s, "554 5.5.1 Error: no valid recipients");
		return;
	}
	if (tx->bdat) {
		smtpd_reply(s, "503 5.5.1 Error: DATA after BDAT");
		return;
	}
	if (s->milters != NULL && smtpd_milter_data(s))
		return;
	smtpd_data_go(s);
}

void
smtpd_data_go(struct smtpd_session *s)
{
	s->n_data++;
	smtpd_tx_start(s);
	s->state = S_DATA;
	smtpd_reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

/* smtpd_tx_finish - end of DATA or BDAT LAST: verdict, then commit */
static void
smtpd_tx_finish(struct smtpd_session *s, int flags)
{
	const struct config *cfg = backmxd.cfg;
	struct smtpd_tx *tx = s->tx;
	struct result res;

	s->state = S_CMD;
	smtpd_emit_flush(tx);
	if (flags & (SMTPD_DATA_BARE | SMTPD_DATA_NUL)) {
		stats.refused_smuggling++;
		log_info("NOQUEUE: reject: %s from unknown[%s]: %s; "
		         "from=<%s> proto=ESMTP helo=<%s>",
		         tx->bdat ? "BDAT" : "DATA", s->addr,
		         (flags & SMTPD_DATA_BARE)
		             ? "550 5.5.2 Error: bare CR or LF in message data"
		             : "554 5.6.0 Error: NUL octet in message data",
		         tx->sender, s->helo);
		if (flags & SMTPD_DATA_BARE)
			smtpd_reply(s, "550 5.5.2 Error: bare CR or LF in "
			               "message data (RFC 5321 2.3.8)");
		else
			smtpd_reply(s, "554 5.6.0 Error: NUL octet in message "
			               "data");
		goto drop;
	}
	if (tx->too_big) {
		stats.refused_size++;
		log_info("NOQUEUE: reject: %s from unknown[%s]: 552 5.3.4 "
		         "Error: message size exceeds fixed limit; from=<%s> "
		         "proto=ESMTP helo=<%s>",
		         tx->bdat ? "BDAT" : "DATA", s->addr, tx->sender,
		         s->helo);
		smtpd_reply(s, "552 5.3.4 Error: message size exceeds fixed "
		               "limit");
		goto drop;
	}
	if (flags & SMTPD_DATA_LONG) {
		stats.refused_other++;
		smtpd_reply(s, "554 5.6.0 Error: message line longer than "
		               "1000 octets");
		goto drop;
	}
	if (policy_hdrscan_check(&tx->hs, cfg->max_hops, &res) < 0) {
		stats.refused_loop++;
		log_info("NOQUEUE: reject: %s from unknown[%s]: %d %s %s; "
		         "from=<%s> proto=ESMTP helo=<%s>",
		         tx->bdat ? "BDAT" : "DATA", s->addr, res.code, res.enh,
		         res.text, tx->sender, s->helo);
		smtpd_reply_result(s, &res);
		goto drop;
	}
	if (tx->milter_fp != NULL) {
		smtpd_milter_start(s); /* its callback commits */
		return;
	}
	smtpd_tx_commit(s);
	return;
drop:
	smtpd_tx_reset(s);
}

/* smtpd_tx_mirrored - `peer_ack peer` (mirror_gate.c): the peer has
 * the commit (ok), or not in time: then the group commit answers 451 */
static void
smtpd_tx_mirrored(void *arg, int ok)
{
	struct smtpd_session *s = arg;

	if (!ok) {
		s->tx->unmirrored = 1;
		log_warn("%s: the peer did not acknowledge its copy within "
		         "%.0fs: 451 4.3.0, message discarded",
		         s->tx->id, mirror_gate_timeout());
	}
	smtpd_commit_wait(s);
}

/* smtpd_tx_commit - the envelope, the spool commit, the group commit */
void
smtpd_tx_commit(struct smtpd_session *s)
{
	struct smtpd_tx *tx = s->tx;
	struct spool_envelope *e = &tx->env;

	if (tx->spool_failed)
		goto spoolfail;

	memset(e, 0, sizeof(*e));
	e->arrival = time(NULL);
	e->size = tx->size + tx->hdrlen;
	e->sender = tx->sender;
	e->body = tx->body;
	e->smtputf8 = tx->smtputf8;
	e->ret = tx->ret;
	e->envid = tx->envid;
	e->client_addr = s->addr;
	e->client_helo = s->helo;
	e->held = tx->held;
	e->nrcpt = tx->nrcpt;
	e->rcpt = calloc(tx->nrcpt, sizeof(*e->rcpt));
	if (e->rcpt == NULL) {
		tx->spool_err = SPOOL_EIO;
		goto spoolfail;
	}
	for (int i = 0; i < tx->nrcpt; i++) {
		e->rcpt[i].address = tx->rcpt[i].address;
		e->rcpt[i].orcpt = tx->rcpt[i].orcpt;
		e->rcpt[i].notify = tx->rcpt[i].notify;
		e->rcpt[i].state = SPOOL_RCPT_PENDING;
		e->rcpt[i].next_attempt = e->arrival;
		e->rcpt[i].route = tx->rcpt[i].route;
	}
	/* a suspended destination: its deferral goes in with the message,
	 * not as a second write (forward_queued logs it) */
	forward_presuspend(e);
	if (spool_writer_commit(tx->w, e) < 0) {
		tx->w = NULL;
		tx->spool_err = spool_errno(backmxd.spool);
		goto spoolfail;
	}
	tx->w = NULL;
	/* peer_ack peer: the 250 waits for the peer's copy first */
	switch (mirror_gate_commit(smtpd_tx_mirrored, s)) {
	case MIRROR_GATE_WAIT:
		s->state = S_COMMIT;
		ev_io_stop(backmxd.loop, &s->rio);
		return;
	case MIRROR_GATE_FAILED:
		smtpd_tx_mirrored(s, 0);
		return;
	}
	/* the 250 waits for the group commit (ev_prepare) */
	smtpd_commit_wait(s);
	return;

spoolfail:
	stats.refused_spool++;
	log_err("%s: spool: %s", tx->id, spool_error(backmxd.spool));
	if (tx->spool_err == SPOOL_ENOSPC)
		smtpd_reply(s, "452 4.3.1 Error: insufficient system storage");
	else
		smtpd_reply(s, "451 4.3.0 Error: local error in processing");
	smtpd_tx_reset(s);
}

/* smtpd_data_input - octets while in S_DATA or S_BDAT */
void
smtpd_data_input(struct smtpd_session *s, const char *p, size_t n, size_t *used)
{
	struct smtpd_tx *tx = s->tx;

	*used = 0;
	if (s->state == S_DATA) {
		size_t k = smtpd_data_feed(&tx->data, p, n, smtpd_emit, tx);

		*used = k;
		if (tx->data.done)
			smtpd_tx_finish(s, tx->data.flags);
		return;
	}
	/* S_BDAT: exactly bdat_left octets, no unstuffing, but the same
	 * CR/LF pairing rules so nothing we store can smuggle downstream */
	while (*used < n && tx->bdat_left > 0) {
		size_t k = n - *used;

		if (k > tx->bdat_left)
			k = tx->bdat_left;
		if (!tx->bdat_discard) {
			for (size_t i = 0; i < k; i++) {
				unsigned char c = p[*used + i];

				if (tx->bdat_cr && c != '\n')
					tx->bdat_flags |= SMTPD_DATA_BARE;
				if (c == '\n' && !tx->bdat_cr)
					tx->bdat_flags |= SMTPD_DATA_BARE;
				if (c == '\0')
					tx->bdat_flags |= SMTPD_DATA_NUL;
				tx->bdat_cr = c == '\r';
				if (c == '\n')
					tx->bdat_linelen = 0;
				else if (++tx->bdat_linelen >
				             SMTPD_TEXT_MAX - 2 &&
				         c != '\r')
					tx->bdat_flags |= SMTPD_DATA_LONG;
			}
			smtpd_emit(tx, p + *used, k);
		}
		*used += k;
		tx->bdat_left -= k;
	}
	if (tx->bdat_left > 0)
		return;
	s->state = S_CMD;
	if (tx->bdat_discard && tx->bdat_silent) {
		smtpd_tx_reset(s); /* answered 552 when announced */
		return;
	}
	if (tx->bdat_discard) {
		smtpd_reply(s, "503 5.5.1 Error: %s",
		            tx->throwaway ? "need MAIL command"
		                          : "no valid recipients");
		tx->bdat_discard = 0;
		if (tx->throwaway)
			smtpd_tx_reset(s);
		return;
	}
	if (!tx->bdat_last) {
		smtpd_reply(s, "250 2.0.0 Ok: %llu octets",
		            (unsigned long long)tx->size);
		return;
	}
	if (tx->bdat_cr)
		tx->bdat_flags |= SMTPD_DATA_BARE;
	smtpd_tx_finish(s, tx->bdat_flags);
}

void
smtpd_cmd_bdat(struct smtpd_session *s, char *arg)
{
	struct smtpd_tx *tx = s->tx;
	unsigned long long n;
	char *end;
	int last = 0, v;

	errno = 0;
	n = strtoull(arg, &end, 10);
	if (!isdigit((unsigned char)*arg) || errno) {
		smtpd_reply(s, "501 5.5.4 Syntax: BDAT size [LAST]");
		return;
	}
	while (*end == ' ')
		end++;
	if (strcasecmp(end, "LAST") == 0)
		last = 1;
	else if (*end != '\0') {
		smtpd_reply(s, "501 5.5.4 Syntax: BDAT size [LAST]");
		return;
	}
	if (tx == NULL || tx->nrcpt == 0) {
		/* the octets announced must still be read and discarded; a
		 * throwaway transaction consumes them */
		if (tx == NULL) {
			if (n == 0) {
				smtpd_reply(s, "503 5.5.1 Error: need MAIL "
				               "command");
				return;
			}
			if ((tx = calloc(1, sizeof(*tx))) == NULL) {
				smtpd_reply(s, "451 4.3.0 Error: out of "
				               "memory");
				s->close_after_flush = 1;
				return;
			}
			if ((tx->sender = strdup("")) == NULL) {
				free(tx);
				smtpd_reply(s, "451 4.3.0 Error: out of "
				               "memory");
				s->close_after_flush = 1;
				return;
			}
			tx->throwaway = 1;
			s->tx = tx;
		}
		tx->bdat_discard = 1;
		tx->bdat_left = n;
		tx->bdat_last = last;
		if (n == 0) {
			smtpd_reply(s, "503 5.5.1 Error: no valid recipients");
			return;
		}
		s->state = S_BDAT;
		return;
	}
	if ((v = smtpd_bdat_verdict(tx->size, n, backmxd.cfg->max_size)) !=
	    SMTPD_BDAT_OK) {
		/* RFC 3030 / 1870: over the limit is 552 5.3.4 at once; the
		 * transaction is over, the chunk is read into nowhere */
		stats.refused_size++;
		log_info("NOQUEUE: reject: BDAT from unknown[%s]: 552 5.3.4 "
		         "Error: message size exceeds fixed limit (chunk of "
		         "%llu octets over max_size %llu%s); from=<%s> "
		         "proto=ESMTP helo=<%s>",
		         s->addr, n, (unsigned long long)backmxd.cfg->max_size,
		         v == SMTPD_BDAT_CLOSE ? ", closing" : "", tx->sender,
		         s->helo);
		smtpd_reply(s, "552 5.3.4 Error: message size exceeds fixed "
		               "limit");
		smtpd_tx_reset(s);
		if (v == SMTPD_BDAT_CLOSE) {
			s->close_after_flush = 1;
			return;
		}
		if ((tx = calloc(1, sizeof(*tx))) == NULL ||
		    (tx->sender = strdup("")) == NULL) {
			free(tx);
			s->close_after_flush = 1;
			return;
		}
		tx->throwaway = 1;
		tx->bdat_discard = 1;
		tx->bdat_silent = 1;
		tx->bdat_left = n;
		tx->bdat_last = last;
		s->tx = tx;
		s->state = S_BDAT;
		return;
	}
	if (!tx->bdat) {
		tx->bdat = 1;
		s->n_data++;
		smtpd_tx_start(s);
	}
	tx->bdat_left = n;
	tx->bdat_last = last;
	s->state = S_BDAT;
	if (n == 0) {
		size_t used;

		smtpd_data_input(s, "", 0, &used);
	}
}
