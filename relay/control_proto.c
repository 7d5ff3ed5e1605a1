/*
 * control_proto.c - the request side of the control protocol (see
 * control.h): the command table and the request-line parser.  Shared by
 * backmxd (control.c) and backmxctl, so both refuse the same requests;
 * pure, no I/O.  The fuzz target fuzz_control drives the parser.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "control.h"
#include "spool.h"

enum control_arg {
	ARG_NONE,
	ARG_DOMAIN,
	ARG_ID,
	ARG_ID_OR_DOMAIN,
	ARG_FORCE,		/* the word --force */
};

static const struct control_command {
	const char *name;
	enum control_cmd cmd;
	int min, max;
	enum control_arg arg;
	const char *usage;
} control_commands[] = {
	{ "queue", CONTROL_QUEUE, 0, 1, ARG_DOMAIN, "queue [DOMAIN]" },
	{ "show", CONTROL_SHOW, 1, 1, ARG_ID, "show ID" },
	{ "flush", CONTROL_FLUSH, 0, 1, ARG_DOMAIN, "flush [DOMAIN]" },
	{ "hold", CONTROL_HOLD, 1, 1, ARG_ID_OR_DOMAIN, "hold ID|DOMAIN" },
	{ "release", CONTROL_RELEASE, 1, 1, ARG_ID_OR_DOMAIN,
	  "release ID|DOMAIN" },
	{ "delete", CONTROL_DELETE, 1, 1, ARG_ID, "delete ID" },
	{ "bounce", CONTROL_BOUNCE, 1, 1, ARG_ID, "bounce ID" },
	{ "stats", CONTROL_STATS, 0, 0, ARG_NONE, "stats" },
	{ "check-dns", CONTROL_CHECK_DNS, 1, 1, ARG_DOMAIN,
	  "check-dns DOMAIN" },
	{ "reload", CONTROL_RELOAD, 0, 1, ARG_FORCE, "reload [--force]" },
	{ "ack-spool", CONTROL_ACK_SPOOL, 0, 0, ARG_NONE, "ack-spool" },
};
#define NCOMMANDS (sizeof(control_commands) / sizeof(control_commands[0]))

const char *
control_usage(void)
{
	return "usage: backmxctl [-c FILE | -s SOCKET] COMMAND [ARGS] [--json]\n"
	       "commands:\n"
	       "  queue [DOMAIN]       list queued mail (of DOMAIN)\n"
	       "  show ID              envelope, recipients and header of a message\n"
	       "  flush [DOMAIN]       try queued mail (of DOMAIN) now\n"
	       "  hold ID|DOMAIN       stop delivery attempts\n"
	       "  release ID|DOMAIN    resume delivery attempts\n"
	       "  delete ID            remove a message, no bounce\n"
	       "  bounce ID            give up now and bounce to the sender\n"
	       "  stats                counters and spool gauges\n"
	       "  check-dns DOMAIN     audit a domain's DNS for backup-MX mistakes\n"
	       "  reload [--force]     re-read the configuration (as SIGHUP); --force\n"
	       "                       also drops domains that still have queued mail\n"
	       "  ack-spool            clear a spool damage report shown by stats\n";
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

int
control_request_parse(const char *line, size_t len,
		      struct control_request *req, char *err, size_t errlen)
{
	char tok[CONTROL_ARGS_MAX + 1][CONTROL_TOKEN_MAX + 1];
	const struct control_command *c = NULL;
	size_t i = 0, n;
	int ntok = 0, k;

	memset(req, 0, sizeof(*req));
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
		if (n == 6 && memcmp(line + i, "--json", 6) == 0) {
			req->json = 1;
		} else {
			if (ntok == CONTROL_ARGS_MAX + 1) {
				snprintf(err, errlen, "too many arguments");
				return -1;
			}
			memcpy(tok[ntok], line + i, n);
			tok[ntok][n] = '\0';
			ntok++;
		}
		i += n;
	}
	if (ntok == 0) {
		snprintf(err, errlen, "no command");
		return -1;
	}
	for (i = 0; i < NCOMMANDS; i++)
		if (strcmp(tok[0], control_commands[i].name) == 0)
			c = &control_commands[i];
	if (c == NULL) {
		snprintf(err, errlen, "unknown command: %.64s", tok[0]);
		return -1;
	}
	req->cmd = c->cmd;
	req->name = c->name;
	req->nargs = ntok - 1;
	if (req->nargs < c->min || req->nargs > c->max) {
		snprintf(err, errlen, "usage: %s", c->usage);
		return -1;
	}
	for (k = 0; k < req->nargs; k++)
		memcpy(req->args[k], tok[k + 1], sizeof(req->args[k]));
	if (req->nargs == 0)
		return 0;
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
			snprintf(err, errlen, "%s: bad %s: %.64s", c->name,
				 c->arg == ARG_DOMAIN ? "domain"
						      : "queue id or domain",
				 req->args[0]);
			return -1;
		}
		break;
	case ARG_FORCE:
		if (strcmp(req->args[0], "--force") != 0) {
			snprintf(err, errlen, "usage: %s", c->usage);
			return -1;
		}
		req->force = 1;
		break;
	case ARG_NONE:
		break;
	}
	if (req->arg_is_id)
		for (i = 0; req->args[0][i] != '\0'; i++)
			req->args[0][i] = (char)tolower(
				(unsigned char)req->args[0][i]);
	return 0;
}
