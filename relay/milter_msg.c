/*
 * milter_msg.c - the message stage of the milter session (milter.h,
 * milter_message): at the end of data each milter in order, on the
 * connection milter.c keeps for the session, is sent SMFIC_DATA (when
 * the DATA command did not already), the header fields, end of header,
 * the body in chunks and end of message, and its end-of-message
 * modifications are collected (add/insert/change header, add/delete
 * recipient, replace body, change sender, quarantine).  The header and
 * body edits of one milter are applied (milter_apply_file) before the
 * next sees the message; the recipient changes are smtpd_milter.c's.
 *
 * Called by milter.c's read callback for each reply; calls back the
 * session (smtpd_milter.c) once with the result.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "milter_int.h"

#define MILTER_HDRS_MAX (1024 * 1024)

/* ------------------------------------------------------------------ */
/* the message's header, for SMFIC_HEADER */

static void
mm_free_headers(struct milter_msgrun *mr)
{
	for (int i = 0; i < mr->nhdrs; i++) {
		free(mr->hdrs[i].name);
		free(mr->hdrs[i].value);
	}
	free(mr->hdrs);
	mr->hdrs = NULL;
	mr->nhdrs = 0;
}

static int
mm_parse_headers(struct milter_msgrun *mr)
{
	FILE *fp = mr->m.data;
	char line[2048];
	size_t total = 0;

	rewind(fp);
	while (fgets(line, sizeof(line), fp) != NULL) {
		size_t l = strlen(line);

		if (!strcmp(line, "\r\n") || !strcmp(line, "\n")) {
			total += l; /* the body starts after it */
			break;
		}
		if (total + l > MILTER_HDRS_MAX ||
		    (line[0] != ' ' && line[0] != '\t' &&
		     strchr(line, ':') == NULL))
			break; /* the body starts at this line */
		total += l;
		while (l > 0 && (line[l - 1] == '\n' || line[l - 1] == '\r'))
			line[--l] = '\0';
		if ((line[0] == ' ' || line[0] == '\t') && mr->nhdrs > 0) {
			struct milter_hdr *h = &mr->hdrs[mr->nhdrs - 1];
			size_t ol = strlen(h->value);
			char *nv = realloc(h->value, ol + l + 2);

			if (nv == NULL)
				return -1;
			nv[ol] = '\n';
			memcpy(nv + ol + 1, line, l + 1);
			h->value = nv;
			continue;
		}
		char *colon = strchr(line, ':');

		if (colon == NULL)
			continue; /* a continuation before any field */
		struct milter_hdr *nh =
		    realloc(mr->hdrs, (mr->nhdrs + 1) * sizeof(*nh));

		if (nh == NULL)
			return -1;
		mr->hdrs = nh;
		*colon = '\0';
		nh[mr->nhdrs].name = strdup(line);
		nh[mr->nhdrs].value = strdup(colon + 1);
		if (nh[mr->nhdrs].name == NULL || nh[mr->nhdrs].value == NULL) {
			free(nh[mr->nhdrs].name);
			free(nh[mr->nhdrs].value);
			return -1;
		}
		mr->nhdrs++;
	}
	mr->body_off = (long)total;
	return 0;
}

/* ------------------------------------------------------------------ */
/* verdicts, chain, end */

static void
mm_set_verdict(struct milter_msgrun *mr, const char *spec,
               enum milter_verdict v, const char *reply, const char *why)
{
	if (v > mr->own)
		mr->own = v;
	if (v <= mr->res.verdict && mr->res.verdict != MILTER_CONTINUE)
		return;
	mr->res.verdict = v;
	if (reply != NULL)
		snprintf(mr->res.reply, sizeof(mr->res.reply), "%s", reply);
	snprintf(mr->res.why, sizeof(mr->res.why), "milter %.60s: %.180s", spec,
	         why);
}

/* mm_default - milter_default_action for a dead milter */
static void
mm_default(struct milter_msgrun *mr, const struct milter_conn *c,
           const char *why)
{
	struct milter_reply r;
	char w[200];

	memset(&r, 0, sizeof(r));
	if (!milter_default(&r, c->spec, why))
		return;
	snprintf(w, sizeof(w), "%.120s; milter_default_action=%s", why,
	         r.verdict == MILTER_TEMPFAIL ? "tempfail" : "reject");
	mm_set_verdict(mr, c->spec, r.verdict, r.reply, w);
}

static int
mm_final(const struct milter_msgrun *mr)
{
	return mr->res.verdict == MILTER_REJECT ||
	       mr->res.verdict == MILTER_TEMPFAIL ||
	       mr->res.verdict == MILTER_DISCARD;
}

/* mm_chain - bake the header and body edits so far into a new copy of
 * the message, which the next milter is shown; 0, or -1 */
static int
mm_chain(struct milter_msgrun *mr)
{
	struct milter_mod **pp, *m;
	int edits = mr->res.body != NULL;
	FILE *f;

	for (m = mr->res.mods; m != NULL; m = m->next)
		if (m->kind == MILTER_MOD_ADDHDR ||
		    m->kind == MILTER_MOD_INSHDR ||
		    m->kind == MILTER_MOD_CHGHDR)
			edits = 1;
	if (!edits)
		return 0;
	if ((f = milter_apply_file(&mr->res, mr->m.data)) == NULL)
		return -1;
	/* applied: only the recipient changes stay for smtpd_milter.c */
	for (pp = &mr->res.mods; (m = *pp) != NULL;)
		if (m->kind == MILTER_MOD_ADDRCPT ||
		    m->kind == MILTER_MOD_DELRCPT)
			pp = &m->next;
		else {
			*pp = m->next;
			free(m->name);
			free(m->value);
			free(m);
		}
	if (mr->res.body != NULL)
		fclose(mr->res.body);
	mr->res.body = NULL;
	if (mr->own_data != NULL)
		fclose(mr->own_data);
	mr->own_data = mr->m.data = f;
	mm_free_headers(mr);
	if (mm_parse_headers(mr) < 0)
		mm_free_headers(mr);
	return 0;
}

/* mm_finish - every milter answered (or one ended it): the callback */
static void
mm_finish(struct milter_sess *ms)
{
	struct milter_msgrun *mr = ms->mr;
	milter_cb cb = mr->cb;
	void *arg = mr->arg;
	struct milter_result *res = malloc(sizeof(*res));

	if (res != NULL) {
		*res = mr->res;
		memset(&mr->res, 0, sizeof(mr->res));
		/* the edited copy goes with the result */
		res->message = mr->own_data;
		mr->own_data = NULL;
	}
	switch (res != NULL ? res->verdict : MILTER_TEMPFAIL) {
	case MILTER_CONTINUE:
		stats.milter_accepted++;
		break;
	case MILTER_DISCARD:
		stats.milter_discarded++;
		break;
	case MILTER_QUARANTINE:
		stats.milter_quarantined++;
		break;
	case MILTER_TEMPFAIL:
		stats.milter_tempfailed++;
		break;
	case MILTER_REJECT:
		stats.milter_rejected++;
		break;
	}
	milter_msg_free(mr);
	ms->mr = NULL;
	ms->stage = ST_IDLE;
	cb(arg, res); /* may free ms */
}

/* mm_done_one - the milter being asked is done with the message */
static int
mm_done_one(struct milter_sess *ms)
{
	struct milter_msgrun *mr = ms->mr;
	struct milter_conn *c = &ms->c[ms->cur];

	if (c->state != MC_DEAD)
		milter_account(c, ms->queue_id,
		               milter_verdict_outcome(mr->own));
	if (!mm_final(mr) && ms->cur + 1 < ms->n && mm_chain(mr) < 0) {
		log_err("%s: milter: cannot copy the edited message",
		        ms->queue_id);
		mr->res.verdict = MILTER_TEMPFAIL;
		snprintf(mr->res.reply, sizeof(mr->res.reply),
		         "451 4.3.0 Error: local error in processing");
		snprintf(mr->res.why, sizeof(mr->res.why),
		         "milter chain: cannot copy the edited message");
	}
	ms->cur++;
	mr->begun = 0;
	return mm_final(mr) || ms->cur >= ms->n;
}

void
milter_msg_failed(struct milter_conn *c, const char *why)
{
	struct milter_sess *ms = c->ms;
	mm_default(ms->mr, c, why);
	if (mm_done_one(ms)) {
		mm_finish(ms);
		return;
	}
	milter_msg_next(ms);
}

/* ------------------------------------------------------------------ */
/* replies */

static int
mm_mod_add(struct milter_conn *c, enum milter_mod_kind k, uint32_t index,
           const char *name, const char *value)
{
	struct milter_msgrun *mr = c->ms->mr;
	struct milter_mod *m, **pp;
	size_t l = strlen(name) + (value != NULL ? strlen(value) : 0);

	if (++c->nmods > MILTER_MODS_MAX ||
	    (c->mods_len += l) > MILTER_MODS_LEN) {
		c->bad = "too many modifications (over 1000 or 1 MB)";
		return -1;
	}
	if ((m = calloc(1, sizeof(*m))) == NULL)
		return -1;
	m->kind = k;
	m->index = index;
	m->name = strdup(name);
	m->value = value != NULL ? strdup(value) : NULL;
	if (m->name == NULL || (value != NULL && m->value == NULL)) {
		free(m->name);
		free(m->value);
		free(m);
		return -1;
	}
	for (pp = &mr->res.mods; *pp != NULL; pp = &(*pp)->next)
		;
	*pp = m;
	return 0;
}

/* mm_mod - a modification at end of message: 0 read on, -1 garbage */
static int
mm_mod(struct milter_conn *c, char cmd, const unsigned char *d, size_t dl)
{
	struct milter_msgrun *mr = c->ms->mr;
	const char *s[2];
	uint32_t idx;
	size_t l;

	switch (cmd) {
	case 'h':
		if (!(c->actions & SMFIF_ADDHDRS) ||
		    milter_strings(d, dl, s, 2) < 0)
			return -1;
		return mm_mod_add(c, MILTER_MOD_ADDHDR, 0, s[0], s[1]);
	case 'i':
	case 'm':
		if (dl < 4 ||
		    !(c->actions &
		      (cmd == 'i' ? SMFIF_ADDHDRS : SMFIF_CHGHDRS)) ||
		    milter_strings(d + 4, dl - 4, s, 2) < 0)
			return -1;
		memcpy(&idx, d, 4);
		return mm_mod_add(
		    c, cmd == 'i' ? MILTER_MOD_INSHDR : MILTER_MOD_CHGHDR,
		    ntohl(idx), s[0], s[1]);
	case '+':
	case '-':
		if (!(c->actions &
		      (cmd == '+' ? SMFIF_ADDRCPT : SMFIF_DELRCPT)) ||
		    milter_strings(d, dl, s, 1) < 0)
			return -1;
		return mm_mod_add(
		    c, cmd == '+' ? MILTER_MOD_ADDRCPT : MILTER_MOD_DELRCPT, 0,
		    s[0], NULL);
	case '2': /* SMFIR_ADDRCPT_PAR: ESMTP arguments are not kept */
		if (!(c->actions & SMFIF_ADDRCPT_PAR) ||
		    (milter_strings(d, dl, s, 2) < 0 &&
		     milter_strings(d, dl, s, 1) < 0))
			return -1;
		return mm_mod_add(c, MILTER_MOD_ADDRCPT, 0, s[0], NULL);
	case 'e': /* SMFIR_CHGFROM: the envelope sender; arguments ignored */
		if (!(c->actions & SMFIF_CHGFROM) ||
		    (milter_strings(d, dl, s, 2) < 0 &&
		     milter_strings(d, dl, s, 1) < 0))
			return -1;
		l = strlen(s[0]);
		if (l >= 2 && s[0][0] == '<' && s[0][l - 1] == '>')
			snprintf(mr->res.sender, sizeof(mr->res.sender), "%.*s",
			         (int)(l - 2), s[0] + 1);
		else
			snprintf(mr->res.sender, sizeof(mr->res.sender), "%s",
			         s[0]);
		mr->res.chgfrom = 1;
		return 0;
	case 'b':
		if (!(c->actions & SMFIF_CHGBODY))
			return -1;
		if ((c->body_len += dl) > backmxd.cfg->max_size) {
			c->bad = "replacement body too large (over max_size)";
			return -1;
		}
		if (mr->res.body == NULL && (mr->res.body = tmpfile()) == NULL)
			return -1;
		if (dl > 0 && fwrite(d, 1, dl, mr->res.body) != dl)
			return -1;
		return 0;
	case 'q':
		if (!(c->actions & SMFIF_QUARANTINE) ||
		    milter_strings(d, dl, s, 1) < 0)
			return -1;
		snprintf(mr->res.quarantine, sizeof(mr->res.quarantine), "%s",
		         s[0]);
		mm_set_verdict(mr, c->spec, MILTER_QUARANTINE, NULL,
		               "quarantine");
		return 0;
	}
	return -1;
}

int
milter_msg_reply(struct milter_conn *c, char cmd, const unsigned char *d,
                 size_t dl)
{
	struct milter_msgrun *mr = c->ms->mr;
	int eom = mr->step == MM_EOM;
	char text[512];

	switch (cmd) {
	case 'c':
		if (eom)
			c->in_tx = 0;
		return 1;
	case 's':
		if (mr->step != MM_BODY)
			return -1;
		mr->skip_body = 1;
		return 1;
	case 'a':
		if (eom)
			c->in_tx = 0;
		mr->step = MM_DONE; /* this milter accepts the message */
		return 1;
	case 'd':
		if (eom)
			c->in_tx = 0;
		mm_set_verdict(mr, c->spec, MILTER_DISCARD, NULL, "discard");
		mr->step = MM_DONE;
		return 1;
	case 'r':
	case 't':
	case 'y':
		if (milter_reply_text(cmd, d, dl, text, sizeof(text)) < 0)
			return -1;
		if (eom)
			c->in_tx = 0;
		mm_set_verdict(mr, c->spec,
		               text[0] == '5' ? MILTER_REJECT : MILTER_TEMPFAIL,
		               text, text);
		mr->step = MM_DONE;
		return 1;
	}
	if (!eom)
		return -1;
	return mm_mod(c, cmd, d, dl) < 0 ? -1 : 0;
}

/* ------------------------------------------------------------------ */
/* steps */

/* mm_begin - the next milter's part: 1 talk to it, 0 it is skipped
 * (counted as done), -1 the stage is decided */
static int
mm_begin(struct milter_sess *ms)
{
	struct milter_msgrun *mr = ms->mr;
	struct milter_conn *c = &ms->c[ms->cur];

	mr->begun = 1;
	mr->own = MILTER_CONTINUE;
	c->nmods = 0;
	c->mods_len = 0;
	c->body_len = 0;
	c->bad = NULL;
	mr->sub = -1;
	mr->body_done = mr->skip_body = 0;
	mr->step = MM_DATA;
	if (c->state == MC_DEAD) {
		mm_default(mr, c, c->refused);
		return 0;
	}
	if (c->state != MC_READY || c->tx_done)
		return 0;
	return 1;
}

void
milter_msg_next(struct milter_sess *ms)
{
	struct milter_msgrun *mr = ms->mr;
	struct milter_conn *c;
	uint32_t p;

	for (;;) {
		if (ms->cur >= ms->n || mm_final(mr)) {
			mm_finish(ms);
			return;
		}
		c = &ms->c[ms->cur];
		if (!mr->begun && mm_begin(ms) == 0) {
			if (mm_done_one(ms)) {
				mm_finish(ms);
				return;
			}
			continue;
		}
		p = c->proto;
		switch (mr->step) {
		case MM_DATA:
			mr->step = MM_HEADER;
			if ((p & SMFIP_NODATA) || c->data_sent)
				continue;
			c->data_sent = 1;
			milter_macros(c, 'T');
			milter_put(c, 'T', NULL, 0, NULL, 0);
			if (p & SMFIP_NR_DATA)
				continue;
			milter_send(c, 1);
			return;
		case MM_HEADER:
			if (!(p & SMFIP_NOHDRS) && ++mr->sub < mr->nhdrs) {
				const struct milter_hdr *h = &mr->hdrs[mr->sub];
				const char *v = h->value;

				if (!(p & SMFIP_HDR_LEADSPC) && *v == ' ')
					v++;
				milter_put(c, 'L', h->name, strlen(h->name) + 1,
				           v, strlen(v) + 1);
				if (p & SMFIP_NR_HDR)
					continue;
				milter_send(c, 1);
				return;
			}
			mr->step = MM_EOH;
			if (p & SMFIP_NOEOH)
				continue;
			milter_put(c, 'N', NULL, 0, NULL, 0);
			if (p & SMFIP_NR_EOH)
				continue;
			milter_send(c, 1);
			return;
		case MM_EOH:
			mr->step = MM_BODY;
			if (fseek(mr->m.data, mr->body_off, SEEK_SET) < 0) {
				milter_conn_fail(c, "cannot read the message");
				return;
			}
			continue;
		case MM_BODY:
			if (!(p & SMFIP_NOBODY) && !mr->skip_body &&
			    !mr->body_done) {
				unsigned char buf[MILTER_CHUNK];
				size_t n =
				    fread(buf, 1, sizeof(buf), mr->m.data);

				if (n > 0) {
					milter_put(c, 'B', buf, n, NULL, 0);
					if (p & SMFIP_NR_BODY)
						continue;
					milter_send(c, 1);
					return;
				}
				mr->body_done = 1;
			}
			mr->step = MM_EOM;
			milter_macros(c, 'E');
			milter_put(c, 'E', NULL, 0, NULL, 0);
			milter_send(c, 1);
			return;
		case MM_EOM:
		case MM_DONE:
			if (mm_done_one(ms)) {
				mm_finish(ms);
				return;
			}
			continue;
		}
	}
}

static void
mm_kick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	milter_msg_next(w->data);
}

int
milter_message(struct milter_sess *ms, const struct milter_msg *m, milter_cb cb,
               void *arg)
{
	struct milter_msgrun *mr;

	if ((mr = calloc(1, sizeof(*mr))) == NULL)
		return -1;
	mr->m = *m;
	snprintf(mr->sender, sizeof(mr->sender), "%s", m->sender);
	mr->m.sender = mr->sender;
	mr->cb = cb;
	mr->arg = arg;
	if (mm_parse_headers(mr) < 0)
		mm_free_headers(mr);
	if (ms->discard) {
		mr->res.verdict = MILTER_DISCARD;
		snprintf(mr->res.why, sizeof(mr->res.why), "%s",
		         ms->discard_why);
	}
	snprintf(ms->queue_id, sizeof(ms->queue_id), "%s", m->queue_id);
	ms->mr = mr;
	ms->stage = ST_MESSAGE;
	ms->cur = 0;
	/* the callback never runs inside this call */
	ev_timer_init(&mr->kick, mm_kick_cb, 0., 0.);
	mr->kick.data = ms;
	ev_timer_start(backmxd.loop, &mr->kick);
	return 0;
}

void
milter_msg_free(struct milter_msgrun *mr)
{
	struct milter_result *res;

	if (mr == NULL)
		return;
	ev_timer_stop(backmxd.loop, &mr->kick);
	mm_free_headers(mr);
	if (mr->own_data != NULL)
		fclose(mr->own_data);
	/* what a cancelled run collected */
	if ((res = malloc(sizeof(*res))) != NULL) {
		*res = mr->res;
		milter_result_free(res);
	}
	free(mr);
}

void
milter_result_free(struct milter_result *res)
{
	struct milter_mod *m, *next;

	if (res == NULL)
		return;
	for (m = res->mods; m != NULL; m = next) {
		next = m->next;
		free(m->name);
		free(m->value);
		free(m);
	}
	if (res->body != NULL)
		fclose(res->body);
	if (res->message != NULL)
		fclose(res->message);
	free(res);
}
