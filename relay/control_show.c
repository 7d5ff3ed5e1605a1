/*
 * control_show.c - `show ID`: the envelope, the recipients and the header
 * of one message; `show ID --body` the whole message, streamed chunk by
 * chunk from the spool while the client reads (one body chunk in memory
 * at a time).  Called by control.c's dispatcher.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backmxd.h"
#include "control_int.h"

#define CONTROL_HEADER_MAX (256 * 1024)
#define CONTROL_LINE_SPLIT (64 * 1024) /* a longer line is cut */

struct control_showjob {
	char id[SPOOL_ID_LEN + 1];
	uint32_t chunk;  /* next chunk to read */
	uint64_t offset; /* octets sent (--json) */
	uint64_t lines;
	struct json_buf part; /* a line not ended by the last chunk */
};

void
control_showjob_free(struct control_showjob *s)
{
	if (s == NULL)
		return;
	json_buf_free(&s->part);
	free(s);
}

/* control_body_line - one message line as "+LINE" (its CRLF dropped) */
static void
control_body_line(struct control_client *c, const char *p, size_t n)
{
	if (n > 0 && p[n - 1] == '\r')
		n--;
	json_buf_puts(&c->out, "+");
	json_buf_append(&c->out, p, n);
	json_buf_puts(&c->out, "\n");
	c->show->lines++;
}

static void
control_body_produce(struct control_client *c)
{
	struct control_showjob *s = c->show;
	const void *data;
	const char *p, *lf;
	size_t len;
	int r;

	r = spool_body_read(backmxd.spool, s->id, s->chunk, &data, &len);
	if (r < 0) {
		control_end_err(c, "spool: cannot read the body of %s: %s",
		                s->id, spool_error(backmxd.spool));
		return;
	}
	if (r == 0) {
		if (!c->req.json && s->part.len > 0)
			control_body_line(c, s->part.data, s->part.len);
		log_info("control: show id=%s body octets=%llu uid=%ld", s->id,
		         (unsigned long long)s->offset, c->uid);
		control_end_ok(c);
		return;
	}
	s->chunk++;
	if (c->req.json) {
		json_buf_printf(&c->out,
		                "+{\"id\": \"%s\", \"offset\": %llu, "
		                "\"data\": ",
		                s->id, (unsigned long long)s->offset);
		json_put_string(&c->out, data, len);
		json_buf_puts(&c->out, "}\n");
		s->offset += len;
		return;
	}
	s->offset += len;
	p = data;
	while (len > 0) {
		if ((lf = memchr(p, '\n', len)) == NULL) {
			json_buf_append(&s->part, p, len);
			if (s->part.len >= CONTROL_LINE_SPLIT) {
				control_body_line(c, s->part.data, s->part.len);
				s->part.len = 0;
			}
			break;
		}
		if (s->part.len > 0) {
			json_buf_append(&s->part, p, (size_t)(lf - p));
			control_body_line(c, s->part.data, s->part.len);
			s->part.len = 0;
		} else
			control_body_line(c, p, (size_t)(lf - p));
		len -= (size_t)(lf - p) + 1;
		p = lf + 1;
	}
	if (s->part.oom)
		c->out.oom = 1;
}

static void
control_show_body(struct control_client *c)
{
	struct spool_envelope *e;

	if ((e = spool_envelope_get(backmxd.spool, c->req.args[0])) == NULL) {
		if (spool_errno(backmxd.spool) == SPOOL_ENOTFOUND)
			control_end_err(c, "no such message %s",
			                c->req.args[0]);
		else
			control_end_err(c, "spool: %s",
			                spool_error(backmxd.spool));
		return;
	}
	spool_envelope_free(e);
	if ((c->show = calloc(1, sizeof(*c->show))) == NULL) {
		control_end_err(c, "out of memory");
		return;
	}
	memcpy(c->show->id, c->req.args[0], SPOOL_ID_LEN);
	c->show->id[SPOOL_ID_LEN] = '\0';
	json_buf_init(&c->show->part);
	c->produce = control_body_produce;
}

/* control_read_header - the message's header (up to the empty line) */
static int
control_read_header(const char *id, struct json_buf *h)
{
	const void *data;
	size_t len;
	uint32_t n;
	char *end;
	int r;

	for (n = 0; h->len < CONTROL_HEADER_MAX; n++) {
		if ((r = spool_body_read(backmxd.spool, id, n, &data, &len)) <
		    0)
			return -1;
		if (r == 0)
			break;
		json_buf_append(h, data, len);
		if (h->oom)
			return -1;
		if (h->len >= 2 &&
		    (memcmp(h->data, "\r\n", 2) == 0 || h->data[0] == '\n')) {
			h->len = 0;
			return 0;
		}
		if ((end = strstr(h->data, "\n\r\n")) != NULL ||
		    (end = strstr(h->data, "\n\n")) != NULL) {
			h->len = (size_t)(end - h->data) + 1;
			h->data[h->len] = '\0';
			return 0;
		}
	}
	if (h->len > CONTROL_HEADER_MAX)
		h->len = CONTROL_HEADER_MAX;
	if (h->data != NULL)
		h->data[h->len] = '\0';
	return 0;
}

static void
control_show(struct control_client *c)
{
	struct spool_envelope *e;
	struct json_buf h;
	char when[32];
	char *line, *next;
	int i;

	if ((e = spool_envelope_get(backmxd.spool, c->req.args[0])) == NULL) {
		if (spool_errno(backmxd.spool) == SPOOL_ENOTFOUND)
			control_end_err(c, "no such message %s",
			                c->req.args[0]);
		else
			control_end_err(c, "spool: %s",
			                spool_error(backmxd.spool));
		return;
	}
	json_buf_init(&h);
	if (control_read_header(e->id, &h) < 0) {
		control_end_err(c, "spool: cannot read the body of %s: %s",
		                e->id, spool_error(backmxd.spool));
		goto done;
	}
	if (c->req.json) {
		json_buf_puts(&c->out, "+");
		control_put_json(&c->out, e);
		json_buf_puts(&c->out, ", \"client_addr\": ");
		json_put_cstring(&c->out, e->client_addr);
		json_buf_puts(&c->out, ", \"client_helo\": ");
		json_put_cstring(&c->out, e->client_helo);
		json_buf_puts(&c->out, ", \"envid\": ");
		json_put_cstring(&c->out, e->envid);
		json_buf_printf(&c->out,
		                ", \"ret\": %s, \"body\": \"%s\", "
		                "\"smtputf8\": %s, \"is_bounce\": %s, "
		                "\"header\": ",
		                e->ret == SPOOL_RET_FULL   ? "\"FULL\""
		                : e->ret == SPOOL_RET_HDRS ? "\"HDRS\""
		                                           : "null",
		                e->body == SPOOL_BODY_8BITMIME ? "8BITMIME"
		                : e->body == SPOOL_BODY_BINARYMIME
		                    ? "BINARYMIME"
		                    : "7BIT",
		                e->smtputf8 ? "true" : "false",
		                e->is_bounce ? "true" : "false");
		json_put_string(&c->out, h.data ? h.data : "", h.len);
		json_buf_puts(&c->out, "}\n");
	} else {
		control_time(when, sizeof(when), e->arrival);
		control_line(c, "id:        %s%s", e->id,
		             e->held ? "  (held)" : "");
		control_line(c, "arrival:   %s (%lld)", when,
		             (long long)e->arrival);
		control_line(c, "size:      %llu", (unsigned long long)e->size);
		control_line(c, "sender:    <%s>%s", e->sender ? e->sender : "",
		             e->is_bounce ? "  (bounce)" : "");
		control_line(c, "client:    %s helo=%s",
		             e->client_addr ? e->client_addr : "-",
		             e->client_helo ? e->client_helo : "-");
		control_line(c, "dsn:       envid=%s ret=%s body=%s%s",
		             e->envid ? e->envid : "-",
		             e->ret == SPOOL_RET_FULL   ? "FULL"
		             : e->ret == SPOOL_RET_HDRS ? "HDRS"
		                                        : "-",
		             e->body == SPOOL_BODY_8BITMIME     ? "8BITMIME"
		             : e->body == SPOOL_BODY_BINARYMIME ? "BINARYMIME"
		                                                : "7BIT",
		             e->smtputf8 ? " SMTPUTF8" : "");
		control_line(c, "recipients:");
		for (i = 0; i < e->nrcpt; i++) {
			const struct spool_rcpt *r = &e->rcpt[i];

			control_time(when, sizeof(when), r->next_attempt);
			control_line(c, "  %-9s %s  attempts=%d next=%s%s%s",
			             control_state_name(r->state),
			             r->address ? r->address : "", r->attempts,
			             r->state == SPOOL_RCPT_PENDING ? when
			                                            : "-",
			             r->route ? " route=" : "",
			             r->route ? r->route : "");
			if (r->orcpt != NULL)
				control_line(c, "            orcpt=%s",
				             r->orcpt);
			if (r->last_error != NULL)
				control_line(c, "            %s",
				             r->last_error);
		}
		control_line(c, "header:");
		for (line = h.data; line != NULL && *line != '\0';
		     line = next) {
			if ((next = strchr(line, '\n')) != NULL)
				*next++ = '\0';
			if (next != NULL && next - line >= 2 &&
			    next[-2] == '\r')
				next[-2] = '\0';
			control_line(c, "  %s", line);
		}
	}
	log_info("control: show id=%s uid=%ld", e->id, c->uid);
	control_end_ok(c);
done:
	json_buf_free(&h);
	spool_envelope_free(e);
}

void
control_show_start(struct control_client *c)
{
	if (c->req.body)
		control_show_body(c);
	else
		control_show(c);
}
