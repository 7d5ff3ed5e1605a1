/*
 * control_proto.c - the request side of the control protocol (see
 * control.h): the command table and the request-line parser.  Shared by
 * backmxd (control.c) and backmxctl, so both refuse the same requests;
 * pure, no I/O.  The fuzz target fuzz_control drives the parser.
 */
#include <ctype.h>
#include <regex.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "control.h"
#include "spool.h"

enum control_arg {
	ARG_NONE,
	ARG_DOMAIN,
	ARG_ID,
	ARG_ID_OR_DOMAIN,
};

#define OPT_FILTER 0x01      /* --sender --rcpt --older ... --all */
#define OPT_BODY 0x02        /* --body */
#define OPT_NEED_FILTER 0x04 /* a filter or --all is required */
#define OPT_FORCE 0x08       /* --force (reload) */
#define OPT_NOW 0x10         /* --now (verify) */

static const struct control_command {
	const char *name;
	enum control_cmd cmd;
	int min, max;
	enum control_arg arg;
	int opts;
	const char *usage;
} control_commands[] = {
    {"queue", CONTROL_QUEUE, 0, 1, ARG_ID_OR_DOMAIN, OPT_FILTER,
     "queue [ID|DOMAIN] [FILTER...]"},
    {"show", CONTROL_SHOW, 1, 1, ARG_ID, OPT_BODY, "show ID [--body]"},
    {"flush", CONTROL_FLUSH, 0, 1, ARG_ID_OR_DOMAIN, OPT_FILTER,
     "flush [ID|DOMAIN] [FILTER...]"},
    {"hold", CONTROL_HOLD, 0, 1, ARG_ID_OR_DOMAIN, OPT_FILTER,
     "hold [ID|DOMAIN] [FILTER...]"},
    {"release", CONTROL_RELEASE, 0, 1, ARG_ID_OR_DOMAIN, OPT_FILTER,
     "release [ID|DOMAIN] [FILTER...]"},
    {"delete", CONTROL_DELETE, 0, 1, ARG_ID_OR_DOMAIN,
     OPT_FILTER | OPT_NEED_FILTER, "delete ID|DOMAIN|--all [FILTER...]"},
    {"bounce", CONTROL_BOUNCE, 0, 1, ARG_ID_OR_DOMAIN,
     OPT_FILTER | OPT_NEED_FILTER, "bounce ID|DOMAIN|--all [FILTER...]"},
    {"requeue", CONTROL_REQUEUE, 0, 1, ARG_ID_OR_DOMAIN, OPT_FILTER,
     "requeue [ID|DOMAIN] [FILTER...]"},
    {"shape", CONTROL_SHAPE, 0, 1, ARG_DOMAIN, 0, "shape [DOMAIN]"},
    {"pause", CONTROL_PAUSE, 0, 1, ARG_DOMAIN, 0, "pause [DOMAIN]"},
    {"resume", CONTROL_RESUME, 1, 1, ARG_DOMAIN, 0, "resume DOMAIN"},
    {"stats", CONTROL_STATS, 0, 0, ARG_NONE, 0, "stats"},
    {"check-dns", CONTROL_CHECK_DNS, 1, 1, ARG_DOMAIN, 0, "check-dns DOMAIN"},
    {"reload", CONTROL_RELOAD, 0, 0, ARG_NONE, OPT_FORCE, "reload [--force]"},
    {"ack-spool", CONTROL_ACK_SPOOL, 0, 0, ARG_NONE, 0, "ack-spool"},
    {"verify", CONTROL_VERIFY, 1, 1, ARG_NONE, OPT_NOW,
     "verify ADDRESS [--now]"},
    {"peer", CONTROL_PEER, 0, 0, ARG_NONE, 0, "peer"},
    {"takeover", CONTROL_TAKEOVER, 0, 0, ARG_NONE, 0, "takeover"},
};
#define NCOMMANDS (sizeof(control_commands) / sizeof(control_commands[0]))

const char *
control_usage(void)
{
	return "usage: backmxctl [-q] [-c FILE | -s SOCKET] COMMAND [ARGS] "
	       "[--json]\n"
	       "commands (FILTER: --sender RE --rcpt RE --older DUR --younger "
	       "DUR\n"
	       "          --held --id ID; several filters must all match):\n"
	       "  queue [DOMAIN] [FILTER]    list queued mail\n"
	       "  show ID [--body]           envelope, recipients and header "
	       "(or the whole message)\n"
	       "  flush [DOMAIN] [FILTER]    try queued mail now\n"
	       "  requeue [DOMAIN] [FILTER]  reset the retry schedule, route "
	       "anew now\n"
	       "  hold ID|DOMAIN|FILTER      stop delivery attempts\n"
	       "  release ID|DOMAIN|FILTER   resume delivery attempts\n"
	       "  delete ID|DOMAIN|FILTER|--all  remove messages, no bounce\n"
	       "  bounce ID|DOMAIN|FILTER|--all  give up now and bounce to the "
	       "senders\n"
	       "  shape [DOMAIN]             messages per domain by age (as "
	       "qshape)\n"
	       "  pause [DOMAIN]             refuse new mail for DOMAIN (450 "
	       "4.3.2); list\n"
	       "  resume DOMAIN              accept new mail for DOMAIN again\n"
	       "  stats                      counters and spool gauges\n"
	       "  check-dns DOMAIN           audit a domain's DNS for "
	       "backup-MX mistakes\n"
	       "  reload [--force]           re-read the configuration (as "
	       "SIGHUP); --force\n"
	       "                             also drops domains that still "
	       "have queued mail\n"
	       "  ack-spool                  clear a spool damage report shown "
	       "by stats\n"
	       "  verify ADDRESS [--now]     cached recipient answers; --now "
	       "asks the sources\n"
	       "  peer                       mirror link, replication lag, "
	       "takeover state\n"
	       "  takeover                   deliver the mail held for the "
	       "mirror peer now\n";
}

/* control_parse_duration - config_parse_duration's units, at most about a
 * century (a larger age is a typing error, not a filter) */
long
control_parse_duration(const char *s)
{
	long v = config_parse_duration(s);

	return v > 100L * 366 * 86400 ? -1 : v;
}

int
control_filter_empty(const struct control_filter *f)
{
	return f->domain[0] == '\0' && f->id[0] == '\0' && !f->has_sender &&
	       !f->has_rcpt && f->older < 0 && f->younger < 0 && !f->held;
}

void
control_filter_describe(const struct control_filter *f, char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = '\0';
#define DESC(...)                                                              \
	do {                                                                   \
		if (n < len)                                                   \
			n += (size_t)snprintf(buf + n, len - n, __VA_ARGS__);  \
	} while (0)
	if (f->id[0])
		DESC("%sid=%s", n ? " " : "", f->id);
	if (f->domain[0])
		DESC("%sdomain=%s", n ? " " : "", f->domain);
	if (f->has_sender)
		DESC("%ssender=%s", n ? " " : "", f->sender);
	if (f->has_rcpt)
		DESC("%srcpt=%s", n ? " " : "", f->rcpt);
	if (f->older >= 0)
		DESC("%solder=%lds", n ? " " : "", f->older);
	if (f->younger >= 0)
		DESC("%syounger=%lds", n ? " " : "", f->younger);
	if (f->held)
		DESC("%sheld", n ? " " : "");
	if (n == 0)
		DESC("all");
#undef DESC
}

int
control_is_id(const char *s)
{
	size_t i;

	for (i = 0; i < SPOOL_ID_LEN; i++)
		if (!isxdigit((unsigned char)s[i]))
			return 0;
	return s[i] == '\0';
}

/*
 * control_domain_canon - in place: drop one leading '@' (ETRN style) and
 * one trailing dot, lowercase; -1 unless it is a plausible domain name
 * (LDH labels of 1-63 octets, '_' tolerated, at most 253 octets).
 */
static int
control_domain_canon(char *s)
{
	size_t len, label = 0, i;

	if (s[0] == '@')
		memmove(s, s + 1, strlen(s));
	len = strlen(s);
	if (len > 0 && s[len - 1] == '.')
		s[--len] = '\0';
	if (len == 0 || len > 253)
		return -1;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.') {
			if (label == 0)
				return -1;
			label = 0;
			continue;
		}
		if (!isalnum(c) && c != '-' && c != '_')
			return -1;
		if (++label > 63)
			return -1;
		s[i] = (char)tolower(c);
	}
	return 0;
}

/* control_re_check - 0 when re compiles, else -1 with the reason */
static int
control_re_check(const char *opt, const char *re, char *err, size_t errlen)
{
	char why[128];
	regex_t rx;
	int r;

	if ((r = regcomp(&rx, re, REG_EXTENDED | REG_ICASE | REG_NOSUB)) != 0) {
		regerror(r, &rx, why, sizeof(why));
		snprintf(err, errlen, "%s: bad regular expression: %s", opt,
		         why);
		return -1;
	}
	regfree(&rx);
	return 0;
}

#define CONTROL_TOKENS_MAX 24

int
control_request_parse(const char *line, size_t len, struct control_request *req,
                      char *err, size_t errlen)
{
	char tok[CONTROL_TOKENS_MAX][CONTROL_TOKEN_MAX + 1];
	const char *pos[CONTROL_ARGS_MAX + 1];
	const struct control_command *c = NULL;
	struct control_filter *f = &req->f;
	size_t i = 0, n;
	int ntok = 0, npos = 0, k, opts_seen = 0, filters = 0;

	memset(req, 0, sizeof(*req));
	f->older = f->younger = -1;
	if (len > 0 && line[len - 1] == '\n')
		len--;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len >= CONTROL_LINE_MAX) {
		snprintf(err, errlen, "request too long");
		return -1;
	}
	while (i < len) {
		unsigned char ch = (unsigned char)line[i];

		if (ch == ' ' || ch == '\t') {
			i++;
			continue;
		}
		for (n = 0; i + n < len; n++) {
			ch = (unsigned char)line[i + n];
			if (ch == ' ' || ch == '\t')
				break;
			if (ch < 0x21 || ch > 0x7e) {
				snprintf(err, errlen,
				         "request holds a non-printable octet");
				return -1;
			}
		}
		if (n > CONTROL_TOKEN_MAX) {
			snprintf(err, errlen, "argument too long");
			return -1;
		}
		if (ntok == CONTROL_TOKENS_MAX) {
			snprintf(err, errlen, "too many arguments");
			return -1;
		}
		memcpy(tok[ntok], line + i, n);
		tok[ntok][n] = '\0';
		ntok++;
		i += n;
	}
	/* options, wherever they are; the rest is positional */
	for (k = 0; k < ntok; k++) {
		const char *t = tok[k], *v = NULL;

		if (strncmp(t, "--", 2) != 0) {
			if (npos == CONTROL_ARGS_MAX + 1) {
				snprintf(err, errlen, "too many arguments");
				return -1;
			}
			pos[npos++] = t;
			continue;
		}
		if (!strcmp(t, "--json")) {
			req->json = 1;
			continue;
		}
		if (!strcmp(t, "--body")) {
			req->body = 1;
			opts_seen |= OPT_BODY;
			continue;
		}
		if (!strcmp(t, "--force")) {
			req->force = 1;
			opts_seen |= OPT_FORCE;
			continue;
		}
		if (!strcmp(t, "--now")) {
			req->now = 1;
			opts_seen |= OPT_NOW;
			continue;
		}
		opts_seen |= OPT_FILTER;
		if (!strcmp(t, "--held")) {
			f->held = 1;
			filters++;
			continue;
		}
		if (!strcmp(t, "--all")) {
			f->all = 1;
			continue;
		}
		if (strcmp(t, "--sender") && strcmp(t, "--rcpt") &&
		    strcmp(t, "--older") && strcmp(t, "--younger") &&
		    strcmp(t, "--id")) {
			snprintf(err, errlen, "unknown option: %.64s", t);
			return -1;
		}
		if (k + 1 >= ntok) {
			snprintf(err, errlen, "%s needs a value", t);
			return -1;
		}
		v = tok[++k];
		filters++;
		if (!strcmp(t, "--sender") || !strcmp(t, "--rcpt")) {
			int is_s = t[2] == 's';

			if (control_re_check(t, v, err, errlen) < 0)
				return -1;
			if ((is_s ? f->has_sender : f->has_rcpt)) {
				snprintf(err, errlen, "%s given twice", t);
				return -1;
			}
			snprintf(is_s ? f->sender : f->rcpt, CONTROL_RE_MAX + 1,
			         "%s", v);
			*(is_s ? &f->has_sender : &f->has_rcpt) = 1;
		} else if (!strcmp(t, "--id")) {
			if (!control_is_id(v)) {
				snprintf(err, errlen,
				         "--id: bad queue id: %.64s", v);
				return -1;
			}
			for (n = 0; v[n] != '\0'; n++)
				f->id[n] = (char)tolower((unsigned char)v[n]);
			f->id[n] = '\0';
		} else {
			long d = control_parse_duration(v);

			if (d < 0) {
				snprintf(err, errlen,
				         "%s: bad duration: %.64s (e.g. 30s, "
				         "5m, 4h, 2d, 1w)",
				         t, v);
				return -1;
			}
			*(t[2] == 'o' ? &f->older : &f->younger) = d;
		}
	}
	if (npos == 0) {
		snprintf(err, errlen, "no command");
		return -1;
	}
	for (i = 0; i < NCOMMANDS; i++)
		if (strcmp(pos[0], control_commands[i].name) == 0)
			c = &control_commands[i];
	if (c == NULL) {
		snprintf(err, errlen, "unknown command: %.64s", pos[0]);
		return -1;
	}
	req->cmd = c->cmd;
	req->name = c->name;
	req->nargs = npos - 1;
	if (req->nargs < c->min || req->nargs > c->max) {
		snprintf(err, errlen, "usage: %s", c->usage);
		return -1;
	}
	if ((opts_seen & ~c->opts) != 0) {
		snprintf(err, errlen, "%s takes no %s; usage: %s", c->name,
		         (opts_seen & ~c->opts & OPT_BODY)    ? "--body"
		         : (opts_seen & ~c->opts & OPT_FORCE) ? "--force"
		         : (opts_seen & ~c->opts & OPT_NOW)   ? "--now"
		                                              : "filters",
		         c->usage);
		return -1;
	}
	for (k = 0; k < req->nargs; k++)
		snprintf(req->args[k], sizeof(req->args[k]), "%s", pos[k + 1]);
	if (req->nargs > 0) {
		switch (c->arg) {
		case ARG_ID:
			if (!control_is_id(req->args[0])) {
				snprintf(err, errlen, "%s: bad queue id: %.64s",
				         c->name, req->args[0]);
				return -1;
			}
			req->arg_is_id = 1;
			break;
		case ARG_ID_OR_DOMAIN:
			if (control_is_id(req->args[0])) {
				req->arg_is_id = 1;
				break;
			}
			/* FALLTHROUGH */
		case ARG_DOMAIN:
			if (control_domain_canon(req->args[0]) < 0) {
				snprintf(
				    err, errlen, "%s: bad %s: %.64s", c->name,
				    c->arg == ARG_DOMAIN ? "domain"
				                         : "queue id or domain",
				    req->args[0]);
				return -1;
			}
			break;
		case ARG_NONE:
			break;
		}
		if (req->arg_is_id)
			for (i = 0; req->args[0][i] != '\0'; i++)
				req->args[0][i] = (char)tolower(
				    (unsigned char)req->args[0][i]);
	}
	if (!(c->opts & OPT_FILTER))
		return 0;
	if (req->nargs > 0) {
		filters++;
		if (req->arg_is_id) {
			if (f->id[0] && strcmp(f->id, req->args[0])) {
				snprintf(err, errlen, "%s: two queue ids",
				         c->name);
				return -1;
			}
			memcpy(f->id, req->args[0], sizeof(f->id));
		} else
			memcpy(f->domain, req->args[0], sizeof(f->domain));
	}
	if ((c->opts & OPT_NEED_FILTER) && filters == 0 && !f->all) {
		snprintf(err, errlen,
		         "%s: no filter given: name what to %s, or --all for "
		         "every message",
		         c->name, c->name);
		return -1;
	}
	return 0;
}
