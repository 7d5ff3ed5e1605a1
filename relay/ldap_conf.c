/*
 * ldap_conf.c - reading an ldap:FILE (keys in ldap_src.h) and the -t
 * checks of it.  Shared by backmxd and backmxctl through config.c, so
 * it holds no daemon state.
 */
#include <errno.h>
#include <ldap.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "ldap_src.h"

/* ------------------------------------------------------------------ */
/* the file (also for backmxctl/-t: no daemon state here) */

static char *
ldap_trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' ||
	                 e[-1] == '\n'))
		*--e = '\0';
	return s;
}

/* ldap_filter_shape - 0 when f is one parenthesised RFC 4515 filter
 * with balanced parentheses (a line cut short is not) */
static int
ldap_filter_shape(const char *f)
{
	int depth = 1;

	if (*f++ != '(')
		return -1;
	for (; *f != '\0'; f++) {
		if (depth == 0)
			return -1; /* text after the closing ')' */
		if (*f == '\\') {
			if (f[1] == '\0' || f[2] == '\0')
				return -1;
			f += 2;
		} else if (*f == '(')
			depth++;
		else if (*f == ')')
			depth--;
	}
	return depth == 0 ? 0 : -1;
}

/* ldap_read_pw - the first line of the bind_pw file, with mode checks */
static int
ldap_read_pw(const char *path, const char *user, char *out, size_t outlen,
             char *why, size_t whylen)
{
	struct stat st;
	FILE *fp;
	char line[256];

	if (stat(path, &st) < 0) {
		snprintf(why, whylen, "bind_pw %s: %s", path, strerror(errno));
		return -1;
	}
	if (st.st_mode & S_IROTH) {
		snprintf(why, whylen,
		         "bind_pw %s is readable by others (chmod 0600 or "
		         "0640)",
		         path);
		return -1;
	}
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		struct passwd *pw = getpwnam(user ? user : "backmx");

		if (pw == NULL || pw->pw_uid != st.st_uid) {
			snprintf(why, whylen,
			         "bind_pw %s must be owned by root or the "
			         "backmx user",
			         path);
			return -1;
		}
	}
	if ((fp = fopen(path, "r")) == NULL) {
		snprintf(why, whylen, "bind_pw %s: %s", path, strerror(errno));
		return -1;
	}
	if (fgets(line, sizeof(line), fp) == NULL)
		line[0] = '\0';
	fclose(fp);
	snprintf(out, outlen, "%s", ldap_trim(line));
	return 0;
}

int
ldap_conf_parse(const char *file, struct ldap_cfg *c, const char *user,
                char *err, size_t errlen)
{
	char line[1024], *k, *v, *eq, test[LDAP_FILTER_MAX], why[300];
	FILE *fp;
	int lineno = 0;

	memset(c, 0, sizeof(*c));
	c->timeout = 5;
	if ((fp = fopen(file, "r")) == NULL) {
		snprintf(err, errlen, "%s:0: cannot open: %s", file,
		         strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), fp) != NULL) {
		lineno++;
		k = ldap_trim(line);
		if (*k == '\0' || *k == '#')
			continue;
		if ((eq = strchr(k, '=')) == NULL) {
			snprintf(err, errlen, "%s:%d: expected key = value",
			         file, lineno);
			goto fail;
		}
		*eq = '\0';
		k = ldap_trim(k);
		v = ldap_trim(eq + 1);
		if (!strcmp(k, "server_host")) {
			if (strstr(v, "://") != NULL)
				snprintf(c->uri, sizeof(c->uri), "%s", v);
			else
				snprintf(c->uri, sizeof(c->uri), "ldap://%s",
				         v);
		} else if (!strcmp(k, "search_base"))
			snprintf(c->base, sizeof(c->base), "%s", v);
		else if (!strcmp(k, "query_filter")) {
			snprintf(c->filter, sizeof(c->filter), "%s", v);
			if (policy_ldap_filter(v, "test@example.org", test,
			                       sizeof(test)) < 0) {
				snprintf(err, errlen,
				         "%s:%d: query_filter: only %%s %%u "
				         "%%d %%%% may follow a %%",
				         file, lineno);
				goto fail;
			}
			if (ldap_filter_shape(test) < 0) {
				snprintf(err, errlen,
				         "%s:%d: query_filter: expected one "
				         "filter in balanced parentheses, "
				         "e.g. (mail=%%s), not \"%s\"",
				         file, lineno, v);
				goto fail;
			}
		} else if (!strcmp(k, "bind_dn"))
			snprintf(c->bind_dn, sizeof(c->bind_dn), "%s", v);
		else if (!strcmp(k, "bind_pw")) {
			if (ldap_read_pw(v, user, c->bind_pw,
			                 sizeof(c->bind_pw), why,
			                 sizeof(why)) < 0) {
				snprintf(err, errlen, "%s:%d: %s", file, lineno,
				         why);
				goto fail;
			}
		} else if (!strcmp(k, "timeout")) {
			long t = config_parse_duration(v);

			if (t < 1 || t > 30) {
				snprintf(
				    err, errlen,
				    "%s:%d: timeout: 1s to 30s, not \"%s\"",
				    file, lineno, v);
				goto fail;
			}
			c->timeout = (int)t;
		} else if (!strcmp(k, "tls_ca_cert_file")) {
			if (access(v, R_OK) < 0) {
				snprintf(err, errlen,
				         "%s:%d: tls_ca_cert_file %s: %s", file,
				         lineno, v, strerror(errno));
				goto fail;
			}
			snprintf(c->ca_file, sizeof(c->ca_file), "%s", v);
		} else if (!strcmp(k, "start_tls")) {
			if (!strcasecmp(v, "yes") || !strcasecmp(v, "on"))
				c->start_tls = 1;
			else if (!strcasecmp(v, "no") || !strcasecmp(v, "off"))
				c->start_tls = 0;
			else {
				snprintf(err, errlen,
				         "%s:%d: start_tls: yes or no", file,
				         lineno);
				goto fail;
			}
		} else {
			snprintf(err, errlen, "%s:%d: unknown key \"%s\"", file,
			         lineno, k);
			goto fail;
		}
	}
	fclose(fp);
	if (c->uri[0] == '\0' || c->base[0] == '\0' || c->filter[0] == '\0') {
		snprintf(err, errlen,
		         "%s:0: server_host, search_base and query_filter "
		         "are required",
		         file);
		return -1;
	}
	if (c->bind_pw[0] != '\0' && c->bind_dn[0] == '\0') {
		snprintf(err, errlen, "%s:0: bind_pw without bind_dn", file);
		return -1;
	}
	return 0;
fail:
	fclose(fp);
	return -1;
}

int
ldap_src_check_file(const char *file, const char *user, char *err,
                    size_t errlen)
{
	struct ldap_cfg c;
	LDAPURLDesc *lud = NULL;

	if (ldap_conf_parse(file, &c, user, err, errlen) < 0)
		return -1;
	if (ldap_url_parse(c.uri, &lud) != LDAP_SUCCESS) {
		snprintf(err, errlen, "%s:0: server_host: bad LDAP URI %s",
		         file, c.uri);
		return -1;
	}
	ldap_free_urldesc(lud);
	memset(c.bind_pw, 0, sizeof(c.bind_pw));
	return 0;
}
