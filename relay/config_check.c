/*
 * config_check.c - the `backmxd -t` checks that need more than the
 * file's text (see config_check.h).  Checks that must hold for the user
 * the daemon drops to run in a child that has dropped to that user, so
 * the answer is the kernel's, ACLs and all.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "config_check.h"
#include "config_peer.h"

#define CHECK_EXPIRY_WARN (14 * 86400)

static int config_check_msg(char *, size_t, int, const char *, ...)
    __attribute__((format(printf, 4, 5)));

static int
config_check_msg(char *diag, size_t len, int is_error, const char *fmt, ...)
{
	size_t used = strlen(diag);
	va_list ap;

	if (used + 2 < len) {
		if (!is_error)
			used += snprintf(diag + used, len - used, "warning: ");
		if (used + 2 < len) {
			va_start(ap, fmt);
			vsnprintf(diag + used, len - used - 1, fmt, ap);
			va_end(ap);
			used = strlen(diag);
			diag[used] = '\n';
			diag[used + 1] = '\0';
		}
	}
	return is_error ? 1 : 0;
}

/*
 * config_check_as - run access checks as pw: mode R_OK/W_OK/X_OK on
 * path; returns 0 when allowed, else the errno the user would get.
 */
static int
config_check_as(const struct passwd *pw, const char *path, int mode)
{
	pid_t pid;
	int status;

	if (pw == NULL || geteuid() != 0)
		return access(path, mode) == 0 ? 0 : errno;
	if ((pid = fork()) < 0)
		return 0; /* cannot tell */
	if (pid == 0) {
		if (setgroups(1, &pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
		    setuid(pw->pw_uid) < 0)
			_exit(0);
		_exit(access(path, mode) == 0 ? 0 : (errno & 0x7f));
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 0;
}

static const struct passwd *
config_check_user(const struct config *c)
{
	return c->user != NULL ? getpwnam(c->user) : NULL;
}

int
config_check_file(const struct config *c, const char *path, const char *what,
                  char *diag, size_t diaglen)
{
	const struct passwd *pw = config_check_user(c);
	int e;

	if (access(path, R_OK) < 0)
		return config_check_msg(diag, diaglen, 1, "%s: %s %s: %s",
		                        c->path, what, path, strerror(errno));
	if (pw == NULL || geteuid() != 0)
		return 0;
	if ((e = config_check_as(pw, path, R_OK)) != 0)
		return config_check_msg(diag, diaglen, 1,
		                        "%s: %s %s is not readable by user "
		                        "%s (%s): a reload (SIGHUP) would fail",
		                        c->path, what, path, c->user,
		                        strerror(e));
	return 0;
}

/* config_check_tls - certificate and key: parse, match, dates */
static int
config_check_tls(const struct config *c, char *diag, size_t len)
{
	X509 *x = NULL;
	EVP_PKEY *k = NULL;
	FILE *fp;
	int nerr = 0;
	time_t soon;

	if (c->tls_cert == NULL || c->tls_key == NULL)
		return 0;
	if ((fp = fopen(c->tls_cert, "r")) == NULL)
		return config_check_msg(diag, len, 1, "%s: tls_cert %s: %s",
		                        c->path, c->tls_cert, strerror(errno));
	x = PEM_read_X509(fp, NULL, NULL, NULL);
	fclose(fp);
	if (x == NULL)
		return config_check_msg(diag, len, 1,
		                        "%s: tls_cert %s: no PEM certificate "
		                        "in it",
		                        c->path, c->tls_cert);
	if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0)
		nerr += config_check_msg(diag, len, 1,
		                         "%s: tls_cert %s has expired: clients "
		                         "verifying it will not use STARTTLS",
		                         c->path, c->tls_cert);
	else if (X509_cmp_current_time(X509_get0_notBefore(x)) >= 0)
		nerr += config_check_msg(diag, len, 1,
		                         "%s: tls_cert %s is not valid yet",
		                         c->path, c->tls_cert);
	else {
		soon = time(NULL) + CHECK_EXPIRY_WARN;
		if (X509_cmp_time(X509_get0_notAfter(x), &soon) < 0)
			config_check_msg(diag, len, 0,
			                 "%s: tls_cert %s expires within 14 "
			                 "days",
			                 c->path, c->tls_cert);
	}
	if ((fp = fopen(c->tls_key, "r")) == NULL) {
		nerr += config_check_msg(diag, len, 1, "%s: tls_key %s: %s",
		                         c->path, c->tls_key, strerror(errno));
	} else {
		k = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
		fclose(fp);
		if (k == NULL)
			nerr +=
			    config_check_msg(diag, len, 1,
			                     "%s: tls_key %s: no PEM private "
			                     "key in it (or it is "
			                     "encrypted)",
			                     c->path, c->tls_key);
		else if (X509_check_private_key(x, k) != 1)
			nerr +=
			    config_check_msg(diag, len, 1,
			                     "%s: tls_key %s does not "
			                     "match the certificate in %s",
			                     c->path, c->tls_key, c->tls_cert);
	}
	EVP_PKEY_free(k);
	X509_free(x);
	return nerr;
}

/* config_check_spool - the spool directory, as `user` will use it */
static int
config_check_spool(const struct config *c, char *diag, size_t len)
{
	const struct passwd *pw = config_check_user(c);
	char buf[PATH_MAX], *slash;
	struct dirent *de;
	struct stat st;
	DIR *d;
	int nerr = 0, e;

	if (c->spool == NULL)
		return 0;
	/* the parents must be searchable (the spool itself is made and
	 * handed to `user` at start) */
	snprintf(buf, sizeof(buf), "%s", c->spool);
	if ((slash = strrchr(buf, '/')) != NULL && slash != buf) {
		*slash = '\0';
		if (stat(buf, &st) == 0 &&
		    (e = config_check_as(pw, buf, X_OK)) != 0)
			nerr += config_check_msg(
			    diag, len, 1,
			    "%s: spool %s: %s is not searchable by user "
			    "%s (%s)",
			    c->path, c->spool, buf, c->user ? c->user : "(us)",
			    strerror(e));
	}
	if (stat(c->spool, &st) < 0) {
		if (errno != ENOENT)
			nerr += config_check_msg(diag, len, 1,
			                         "%s: spool %s: %s", c->path,
			                         c->spool, strerror(errno));
		return nerr;
	}
	if (!S_ISDIR(st.st_mode))
		return nerr + config_check_msg(diag, len, 1,
		                               "%s: spool %s is not a "
		                               "directory",
		                               c->path, c->spool);
	/* as root the daemon chowns the directory itself at start */
	if ((pw == NULL || geteuid() != 0) &&
	    (e = config_check_as(pw, c->spool, W_OK | X_OK)) != 0)
		nerr += config_check_msg(diag, len, 1,
		                         "%s: spool %s is not writable (%s)",
		                         c->path, c->spool, strerror(e));
	if (pw == NULL || geteuid() != 0 || (d = opendir(c->spool)) == NULL)
		return nerr;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(buf, sizeof(buf), "%s/%s", c->spool, de->d_name);
		if (lstat(buf, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (st.st_uid == pw->pw_uid && (st.st_mode & 0600) == 0600)
			continue;
		if ((e = config_check_as(pw, buf, R_OK | W_OK)) != 0) {
			nerr += config_check_msg(
			    diag, len, 1,
			    "%s: spool file %s is not writable by user %s "
			    "(%s): chown -R %s %s",
			    c->path, buf, c->user, strerror(e), c->user,
			    c->spool);
			break; /* one is enough to say what to do */
		}
	}
	closedir(d);
	return nerr;
}

/* config_check_key_mode - a private key others can read or write */
static int
config_check_key_mode(const struct config *c, const char *what,
                      const char *path, char *diag, size_t len)
{
	struct stat st;

	if (path == NULL || stat(path, &st) < 0)
		return 0; /* the load reports a missing key */
	if ((st.st_mode & 007) == 0)
		return 0;
	return config_check_msg(diag, len, 1,
	                        "%s: %s %s has mode %04o: readable or "
	                        "writable by others (chmod 0600 or 0640)",
	                        c->path, what, path,
	                        (unsigned)(st.st_mode & 07777));
}

int
config_check_modes(const struct config *c, char *diag, size_t diaglen)
{
	struct stat st;
	int nerr = 0;

	if (c->spool != NULL && stat(c->spool, &st) == 0 &&
	    S_ISDIR(st.st_mode) && (st.st_mode & S_IWOTH))
		nerr += config_check_msg(diag, diaglen, 1,
		                         "%s: spool %s has mode %04o: "
		                         "world-writable (chmod 0700)",
		                         c->path, c->spool,
		                         (unsigned)(st.st_mode & 07777));
	nerr += config_check_key_mode(c, "tls_key", c->tls_key, diag, diaglen);
	if (c->peer != NULL)
		nerr += config_check_key_mode(c, "peer_key", c->peer->key, diag,
		                              diaglen);
	return nerr;
}

int
config_check(const struct config *c, char *diag, size_t diaglen)
{
	char what[POLICY_DOMAIN_MAX + 64];
	int nerr = 0;

	nerr += config_check_modes(c, diag, diaglen);
	nerr += config_check_tls(c, diag, diaglen);
	for (int i = 0; i < c->policy->ndomains; i++) {
		const struct policy_domain *d = c->policy->domains[i];

		if (d->recipients_file == NULL)
			continue;
		snprintf(what, sizeof(what), "domain %s: recipients", d->name);
		nerr += config_check_file(c, d->recipients_file, what, diag,
		                          diaglen);
	}
	nerr += config_check_spool(c, diag, diaglen);
	nerr += config_peer_check_files(c, diag, diaglen);
	return nerr;
}
