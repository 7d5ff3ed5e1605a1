/*
 * pause.c - the set of paused domains (see pause.h) and the control
 * commands pause/resume.  A sorted array: the set is small, smtpd.c
 * asks once per accepted RCPT, a binary search answers.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "backmxd.h"
#include "control_int.h"
#include "pause.h"

static char **pause_names;
static size_t pause_n;
static char pause_path[4096];

void (*pause_changed_hook)(void);

static int
pause_find(const char *domain, size_t *at)
{
	size_t lo = 0, hi = pause_n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int r = strcasecmp(pause_names[mid], domain);

		if (r == 0) {
			*at = mid;
			return 1;
		}
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*at = lo;
	return 0;
}

static int
pause_insert(const char *domain)
{
	char **n, *d;
	size_t at;

	if (pause_find(domain, &at))
		return 0;
	if (pause_n >= PAUSE_MAX)
		return -1;
	if ((d = strdup(domain)) == NULL)
		return -1;
	if ((n = realloc(pause_names, (pause_n + 1) * sizeof(*n))) == NULL) {
		free(d);
		return -1;
	}
	pause_names = n;
	memmove(n + at + 1, n + at, (pause_n - at) * sizeof(*n));
	n[at] = d;
	pause_n++;
	return 1;
}

static void
pause_erase(const char *domain)
{
	size_t at;

	if (!pause_find(domain, &at))
		return;
	free(pause_names[at]);
	memmove(pause_names + at, pause_names + at + 1,
	        (pause_n - at - 1) * sizeof(*pause_names));
	pause_n--;
}

void
pause_reread(const char *spooldir)
{
	while (pause_n > 0)
		free(pause_names[--pause_n]);
	pause_path[0] = '\0';
	pause_load(spooldir);
}

void
pause_load(const char *spooldir)
{
	char line[512];
	FILE *f;
	size_t len;

	if (spooldir == NULL || pause_path[0] != '\0')
		return; /* once: a reload keeps the set */
	snprintf(pause_path, sizeof(pause_path), "%s/paused.domains", spooldir);
	if ((f = fopen(pause_path, "r")) == NULL) {
		if (errno != ENOENT)
			log_warn("pause: cannot read %s: %s", pause_path,
			         strerror(errno));
		return;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		len = strcspn(line, "\r\n \t#");
		line[len] = '\0';
		if (len == 0)
			continue;
		for (size_t i = 0; i < len; i++)
			line[i] = (char)tolower((unsigned char)line[i]);
		if (pause_insert(line) < 0)
			break;
	}
	fclose(f);
	if (pause_n > 0)
		log_info("pause: %zu domain%s paused (from %s)", pause_n,
		         pause_n == 1 ? "" : "s", pause_path);
}

/* pause_save - write the set to a temporary file, fsync, rename */
static int
pause_save(char *err, size_t errlen)
{
	char tmp[sizeof(pause_path) + 8];
	FILE *f;
	size_t i;
	int ok;

	if (pause_path[0] == '\0')
		return 0;
	snprintf(tmp, sizeof(tmp), "%s.tmp", pause_path);
	if ((f = fopen(tmp, "w")) == NULL) {
		snprintf(err, errlen, "cannot write %s: %s", tmp,
		         strerror(errno));
		return -1;
	}
	for (i = 0; i < pause_n; i++)
		fprintf(f, "%s\n", pause_names[i]);
	ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
	ok = fclose(f) == 0 && ok;
	if (!ok || rename(tmp, pause_path) != 0) {
		snprintf(err, errlen, "cannot write %s: %s", pause_path,
		         strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

int
pause_is_paused(const char *domain)
{
	size_t at;

	return pause_n > 0 && domain != NULL && pause_find(domain, &at);
}

int
pause_set(const char *domain, int on, char *err, size_t errlen)
{
	int r;

	if (on) {
		if ((r = pause_insert(domain)) < 0) {
			snprintf(err, errlen, "too many paused domains (%d)",
			         PAUSE_MAX);
			return -1;
		}
	} else {
		size_t at;

		r = pause_find(domain, &at);
		pause_erase(domain);
	}
	if (r == 0)
		return 0;
	if (pause_save(err, errlen) < 0) {
		/* undo, so memory and disk agree */
		if (on)
			pause_erase(domain);
		else
			(void)pause_insert(domain);
		return -1;
	}
	if (pause_changed_hook != NULL)
		pause_changed_hook(); /* workers read the file again */
	return 1;
}

size_t
pause_count(void)
{
	return pause_n;
}

const char *
pause_name(size_t i)
{
	return i < pause_n ? pause_names[i] : NULL;
}

/* control_pause - pause [DOMAIN] (no domain: list), resume DOMAIN */
void
control_pause(struct control_client *c, int on)
{
	const char *domain = c->req.nargs ? c->req.args[0] : NULL;
	char err[512];
	size_t i;
	int r;

	if (domain == NULL) {
		if (c->req.json) {
			json_buf_puts(&c->out, "+{\"paused\": [");
			for (i = 0; i < pause_n; i++) {
				json_buf_puts(&c->out, i ? ", " : "");
				json_put_cstring(&c->out, pause_names[i]);
			}
			json_buf_puts(&c->out, "]}\n");
		} else if (pause_n == 0)
			control_line(c, "no domain is paused");
		else
			for (i = 0; i < pause_n; i++)
				control_line(c, "paused %s", pause_names[i]);
		log_info("control: pause list n=%zu uid=%ld", pause_n, c->uid);
		control_end_ok(c);
		return;
	}
	if (!control_domain_known(c, domain))
		return;
	if ((r = pause_set(domain, on, err, sizeof(err))) < 0) {
		log_warn("control: %s domain=%s failed: %s uid=%ld",
		         on ? "pause" : "resume", domain, err, c->uid);
		control_end_err(c, "%s %s: %s", on ? "pause" : "resume", domain,
		                err);
		return;
	}
	log_info("control: %s domain=%s changed=%d uid=%ld",
	         on ? "pause" : "resume", domain, r, c->uid);
	if (c->req.json)
		json_buf_printf(&c->out, "+{\"%s\": \"%s\", \"changed\": %s}\n",
		                on ? "paused" : "resumed", domain,
		                r ? "true" : "false");
	else
		control_line(c, "%s %s%s", on ? "paused" : "resumed", domain,
		             r    ? ""
		             : on ? " (already paused)"
		                  : " (was not paused)");
	control_end_ok(c);
}
