/*
 * ctl_client.c - backmxctl, the operator CLI: checks the command line
 * with the daemon's own request parser (control_proto.c), sends the one
 * request line over the control socket (control.h) and prints the answer:
 * "+" lines to stdout, the "-ERR" text to stderr with exit 1.
 * Reads the configuration (config.c) only to find the socket's path.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "control.h"
#include "jsonw.h"

#define CTL_DEFAULT_CONFIG "/etc/backmx/backmx.conf"
#define CTL_DIAG_MAX (16 * 1024)
#define CTL_REPLY_TIMEOUT 300	/* seconds without a byte from backmxd */

static void __attribute__((noreturn))
ctl_usage(FILE *fp, int code)
{
	fputs(control_usage(), fp);
	exit(code);
}

static void __attribute__((noreturn, format(printf, 1, 2)))
ctl_die(const char *fmt, ...)
{
	va_list ap;

	fputs("backmxctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* ctl_socket_path - from -s, else the `control` of the config file */
static char *
ctl_socket_path(const char *sock, const char *conf)
{
	struct config *cfg;
	char *diag, *path;
	int nerr = 0;

	if (sock != NULL)
		return strdup(sock);
	if ((diag = malloc(CTL_DIAG_MAX)) == NULL)
		ctl_die("out of memory");
	diag[0] = '\0';
	cfg = config_load(conf, diag, CTL_DIAG_MAX, &nerr);
	if (cfg == NULL) {
		char *nl = strchr(diag, '\n');

		/* the first problem says enough; backmxd -t lists them all */
		if (nl != NULL)
			*nl = '\0';
		ctl_die("cannot read %s: %s (%d error%s; try -s SOCKET)", conf,
			diag[0] ? diag : "unknown error", nerr,
			nerr == 1 ? "" : "s");
	}
	free(diag);
	path = strdup(cfg->control);
	config_free(cfg);
	return path;
}

/* ctl_connect - a connected stream to the daemon, or exit 1 */
static int
ctl_connect(const char *path)
{
	struct sockaddr_un sun;
	struct timeval tv = { CTL_REPLY_TIMEOUT, 0 };
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path))
		ctl_die("cannot connect to %s: path too long", path);
	strcpy(sun.sun_path, path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		ctl_die("socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		ctl_die("cannot connect to %s: %s%s", path, strerror(errno),
			errno == ENOENT || errno == ECONNREFUSED
				? " (is backmxd running?)"
				: "");
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

int
main(int argc, char **argv)
{
	const char *conf = CTL_DEFAULT_CONFIG, *sock = NULL;
	struct control_request req;
	struct jsonw line, msg;
	char err[256], *path, *buf = NULL;
	size_t cap = 0, off;
	ssize_t n;
	FILE *in;
	int i, json = 0, ended = 0, status = 1, fd;

	jsonw_init(&line);
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (line.len == 0 && (!strcmp(a, "-c") || !strcmp(a, "-s"))) {
			if (i + 1 >= argc)
				ctl_usage(stderr, 1);
			if (a[1] == 'c')
				conf = argv[++i];
			else
				sock = argv[++i];
		} else if (line.len == 0 && !strncmp(a, "-c", 2) && a[2]) {
			conf = a + 2;
		} else if (line.len == 0 && !strncmp(a, "-s", 2) && a[2]) {
			sock = a + 2;
		} else if (!strcmp(a, "--json")) {
			json = 1;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			ctl_usage(stdout, 0);
		} else if (line.len == 0 && a[0] == '-') {
			fprintf(stderr, "backmxctl: unknown option %s\n", a);
			ctl_usage(stderr, 1);
		} else {
			if (line.len > 0)
				jsonw_add(&line, " ", 1);
			jsonw_adds(&line, a);
		}
	}
	if (line.len == 0)
		ctl_usage(stderr, 1);
	if (json)
		jsonw_adds(&line, " --json");
	jsonw_add(&line, "\n", 1);
	if (line.oom)
		ctl_die("out of memory");
	/* refuse here with the daemon's words what it would refuse */
	if (control_request_parse(line.buf, line.len, &req, err,
				  sizeof(err)) < 0)
		ctl_die("%s", err);

	path = ctl_socket_path(sock, conf);
	if (path == NULL)
		ctl_die("out of memory");
	fd = ctl_connect(path);
	for (off = 0; off < line.len; off += (size_t)n) {
		n = write(fd, line.buf + off, line.len - off);
		if (n < 0 && errno == EINTR) {
			n = 0;
			continue;
		}
		if (n < 0)
			ctl_die("%s: %s", path, strerror(errno));
	}
	if ((in = fdopen(fd, "r")) == NULL)
		ctl_die("%s: %s", path, strerror(errno));
	jsonw_init(&msg);
	while ((n = getline(&buf, &cap, in)) > 0) {
		if (buf[n - 1] == '\n')
			buf[--n] = '\0';
		if (buf[0] == '+') {
			fwrite(buf + 1, 1, (size_t)n - 1, stdout);
			fputc('\n', stdout);
		} else if (strcmp(buf, ".") == 0) {
			ended = 1;
			status = 0;
			break;
		} else if (strncmp(buf, "-ERR", 4) == 0) {
			/* the daemon's text, kept on one printable line */
			jsonw_text(&msg, buf[4] == ' ' ? buf + 5 : buf + 4);
			fprintf(stderr, "backmxctl: %s\n",
				msg.len ? msg.buf : "failed");
			ended = 1;
			break;
		}
		/* other lines: a newer daemon's; ignored */
	}
	if (!ended) {
		if (ferror(in))
			fprintf(stderr, "backmxctl: %s: %s\n", path,
				errno == EAGAIN ? "no answer from backmxd"
						: strerror(errno));
		else
			fprintf(stderr,
				"backmxctl: backmxd closed the connection "
				"before the end of its answer\n");
	}
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "backmxctl: standard output: %s\n",
			strerror(errno));
		status = 1;
	}
	fclose(in);
	free(buf);
	free(path);
	jsonw_free(&msg);
	jsonw_free(&line);
	return status;
}
