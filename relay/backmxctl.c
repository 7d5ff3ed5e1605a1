/*
 * backmxctl.c - the operator CLI: finds the control socket (-s, or the
 * `control` directive of -c FILE / /etc/backmx/backmx.conf), sends one
 * request line and copies the answer (protocol in control.h) to stdout,
 * the final error and progress lines of long operations to stderr (-q:
 * no progress).  Exit 0 on success, 1 otherwise.  Needs no
 * privilege beyond access to the socket.  check-dns runs here, with the
 * config's resolver (backmxctl_dns.c), when no daemon listens.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backmxd.h"
#include "backmxctl_dns.h"
#include "config.h"
#include "control.h"

#define BACKMXCTL_CONF "/etc/backmx/backmx.conf"
#define BACKMXCTL_SOCKET "/run/backmx/control.sock"
#define BACKMXCTL_RESPONSE_MAX (64 * 1024 * 1024)

/* the daemon's state, which the in-process check-dns borrows */
struct backmxd backmxd;

static void
backmxctl_usage(const char *why)
{
	if (why != NULL)
		fprintf(stderr, "backmxctl: %s\n", why);
	fputs(control_usage(), stderr);
	exit(1);
}

/*
 * backmxctl_scan_control - the `control` value of path read line by
 * line, for when the whole config cannot be loaded by this user (e.g.
 * unreadable recipient files).  NULL when absent.
 */
static char *
backmxctl_scan_control(const char *path)
{
	char line[4096], *p, *end, *val = NULL;
	FILE *fp;

	if ((fp = fopen(path, "r")) == NULL)
		return NULL;
	while (fgets(line, sizeof(line), fp) != NULL) {
		p = line;
		while (*p == ' ' || *p == '\t')
			p++;
		if (strncmp(p, "control", 7) != 0 ||
		    (p[7] != ' ' && p[7] != '\t'))
			continue;
		p += 7;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '"') {
			if ((end = strchr(++p, '"')) == NULL)
				continue;
		} else
			for (end = p; *end && !isspace((unsigned char)*end) &&
			              *end != '#';
			     end++)
				;
		*end = '\0';
		if (*p != '\0') {
			free(val);
			val = strdup(p);
		}
	}
	fclose(fp);
	return val;
}

/* backmxctl_socket_path - from the configuration file */
static char *
backmxctl_socket_path(const char *conf, int explicit)
{
	char diag[4096];
	struct config *cfg;
	char *path;
	int nerr = 0;

	diag[0] = '\0';
	if ((cfg = config_load(conf, diag, sizeof(diag), &nerr)) != NULL) {
		path = strdup(cfg->control);
		config_free(cfg);
		if (path == NULL) {
			fprintf(stderr, "backmxctl: out of memory\n");
			exit(1);
		}
		return path;
	}
	if ((path = backmxctl_scan_control(conf)) != NULL)
		return path;
	if (access(conf, R_OK) == 0 || explicit) {
		char *nl = strchr(diag, '\n');

		if (nl != NULL)
			*nl = '\0';
		fprintf(stderr, "backmxctl: cannot read %s: %s\n", conf,
		        diag[0] ? diag : strerror(errno));
		exit(1);
	}
	return strdup(BACKMXCTL_SOCKET);
}

/*
 * backmxctl_check_dns_local - check-dns without a daemon: when the
 * socket path does not exist or nobody listens on it, load conf and run
 * the audit here.  Returns -1 (then the usual error) when the config
 * cannot be loaded, else the exit status.
 */
static int
backmxctl_check_dns_local(const char *conf, const char *path, int err,
                          const char *domain, int json, int quiet)
{
	char diag[4096];
	struct config *cfg;
	int nerr = 0, rc;

	if (err != ENOENT && err != ECONNREFUSED)
		return -1;
	diag[0] = '\0';
	if ((cfg = config_load(conf, diag, sizeof(diag), &nerr)) == NULL)
		return -1;
	if (!quiet)
		fprintf(stderr,
		        "backmxctl: no daemon on %s (%s): checking with the "
		        "resolver of %s\n",
		        path, strerror(err), conf);
	rc = checkdns_local(cfg, domain, json, stdout, stderr);
	config_free(cfg);
	return rc;
}

/* backmxctl_try_connect - the connected socket, or -1 and *err */
static int
backmxctl_try_connect(const char *path, int *err)
{
	struct sockaddr_un sun;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		*err = ENAMETOOLONG;
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path));
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		*err = errno;
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		*err = errno;
		close(fd);
		return -1;
	}
	return fd;
}

static int
backmxctl_connect(const char *path)
{
	int fd, err;

	if ((fd = backmxctl_try_connect(path, &err)) < 0) {
		fprintf(stderr, "backmxctl: cannot connect to %s: %s\n", path,
		        err == ENAMETOOLONG ? "path too long" : strerror(err));
		exit(1);
	}
	return fd;
}

int
main(int argc, char **argv)
{
	char line[CONTROL_LINE_MAX + 1], err[256];
	struct control_request req;
	const char *conf = BACKMXCTL_CONF, *sock = NULL;
	char *path, *buf = NULL;
	size_t len = 0, cap = 0;
	ssize_t n;
	int i, fd, conf_given = 0, json = 0, quiet = 0;
	FILE *in;

	/* options come before the command; --json anywhere */
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = 1;
		else if (strcmp(argv[i], "-q") == 0)
			quiet = 1;
		else if (strcmp(argv[i], "-c") == 0 ||
		         strcmp(argv[i], "-s") == 0) {
			if (i + 1 >= argc)
				backmxctl_usage("option requires an argument");
			if (argv[i][1] == 'c') {
				conf = argv[++i];
				conf_given = 1;
			} else
				sock = argv[++i];
		} else if (strcmp(argv[i], "-h") == 0 ||
		           strcmp(argv[i], "--help") == 0) {
			fputs(control_usage(), stdout);
			return 0;
		} else if (argv[i][0] == '-' && argv[i][1] != '\0')
			backmxctl_usage("unknown option");
		else
			break;
	}
	if (i >= argc)
		backmxctl_usage(NULL);
	len = 0;
	for (; i < argc; i++) {
		size_t l = strlen(argv[i]);

		if (strcmp(argv[i], "--json") == 0) {
			json = 1;
			continue;
		}
		if (l == 0 || strpbrk(argv[i], " \t\r\n") != NULL) {
			fprintf(stderr, "backmxctl: bad argument: \"%s\"\n",
			        argv[i]);
			return 1;
		}
		if (len + l + 2 >= sizeof(line) - 8) {
			fprintf(stderr, "backmxctl: request too long\n");
			return 1;
		}
		if (len > 0)
			line[len++] = ' ';
		memcpy(line + len, argv[i], l);
		len += l;
	}
	if (json) {
		memcpy(line + len, " --json", 7);
		len += 7;
	}
	line[len++] = '\n';
	line[len] = '\0';
	if (control_request_parse(line, len, &req, err, sizeof(err)) < 0) {
		if (strncmp(err, "unknown command", 15) == 0 ||
		    strcmp(err, "no command") == 0)
			backmxctl_usage(err);
		fprintf(stderr, "backmxctl: %s\n", err);
		return 1;
	}

	path = sock != NULL ? strdup(sock)
	                    : backmxctl_socket_path(conf, conf_given);
	if (path == NULL) {
		fprintf(stderr, "backmxctl: out of memory\n");
		return 1;
	}
	if (req.cmd == CONTROL_CHECK_DNS) {
		int rc = -1, e;

		if ((fd = backmxctl_try_connect(path, &e)) < 0 &&
		    (rc = backmxctl_check_dns_local(conf, path, e, req.args[0],
		                                    json, quiet)) >= 0)
			return rc;
		if (fd < 0) {
			fprintf(stderr, "backmxctl: cannot connect to %s: %s\n",
			        path, strerror(e));
			return 1;
		}
	} else
		fd = backmxctl_connect(path);
	for (size_t off = 0; off < len; off += (size_t)n) {
		n = write(fd, line + off, len - off);
		if (n < 0) {
			if (errno == EINTR) {
				n = 0;
				continue;
			}
			fprintf(stderr, "backmxctl: %s: write: %s\n", path,
			        strerror(errno));
			return 1;
		}
	}
	if ((in = fdopen(fd, "r")) == NULL) {
		fprintf(stderr, "backmxctl: %s\n", strerror(errno));
		return 1;
	}
	while ((n = getline(&buf, &cap, in)) > 0) {
		if (buf[n - 1] != '\n')
			break; /* truncated: closed mid-line */
		buf[--n] = '\0';
		if (buf[0] == '+') {
			fwrite(buf + 1, 1, (size_t)n - 1, stdout);
			putchar('\n');
		} else if (buf[0] == '~') {
			/* progress of a long operation: not output */
			if (!quiet)
				fprintf(stderr, "backmxctl: %s\n", buf + 1);
		} else if (strcmp(buf, ".") == 0) {
			if (fflush(stdout) != 0 || ferror(stdout)) {
				fprintf(stderr, "backmxctl: stdout: %s\n",
				        strerror(errno));
				return 1;
			}
			return 0;
		} else if (strncmp(buf, "-ERR", 4) == 0) {
			fflush(stdout);
			fprintf(stderr, "backmxctl: %s\n",
			        buf[4] == ' ' ? buf + 5 : "error");
			return 1;
		} else
			break;
		if ((size_t)n > BACKMXCTL_RESPONSE_MAX)
			break;
	}
	fflush(stdout);
	fprintf(stderr, "backmxctl: %s: connection closed without an answer\n",
	        path);
	return 1;
}
