/*
 * tls_source.c - an SMTP load client with STARTTLS for make bench (the
 * TLS rows of tests/bench/row_tls.sh; smtp-source has no TLS).
 *
 * usage: tls_source [-T] [-R] [-s SESSIONS] [-m MESSAGES] [-l LENGTH]
 *                   [-f FROM] [-t TO] [-M HELO] HOST:PORT
 *
 * SESSIONS threads share MESSAGES messages; each message is one
 * connection: banner, EHLO, (with -T) STARTTLS, a TLS handshake and EHLO
 * again, MAIL, RCPT, DATA with a LENGTH-octet body, QUIT, close_notify.
 * No pipelining (as smtp-source).  With -R each thread offers the session
 * (TLS 1.3 ticket or 1.2 session) it got on its previous connection, so
 * every connection after a thread's first may be resumed; without it
 * every handshake is a full one.  The certificate is not checked.
 *
 * Prints one line: messages sent, seconds, msg/s, TLS handshakes, how
 * many of them were resumed, failed transactions (wrong reply or broken
 * connection: the message is not counted and the thread goes on).
 * Exit status 1 when any failed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int opt_tls, opt_resume;
static int opt_sessions = 10, opt_msgs = 1000, opt_len = 4096;
static const char *opt_from = "bench@sender.example";
static const char *opt_to = "user@bench.example";
static const char *opt_helo = "client.example";
static struct sockaddr_storage peer;
static socklen_t peer_len;
static SSL_CTX *ctx;
static char *body;
static size_t body_len;
static atomic_int claimed, sent, failed, handshakes, resumed;

struct conn {
	int fd;
	SSL *ssl;
	char buf[4096];
	size_t len, pos;
};

static int
conn_write(struct conn *c, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w;

		if (c->ssl != NULL) {
			int r = SSL_write(c->ssl, p, (int)n);
			w = r > 0 ? r : -1;
		} else
			w = write(c->fd, p, n);
		if (w < 0) {
			if (c->ssl == NULL && errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* conn_line - the next line (CRLF cut off) into out, or -1 */
static int
conn_line(struct conn *c, char *out, size_t outlen)
{
	size_t o = 0;

	for (;;) {
		while (c->pos < c->len) {
			char ch = c->buf[c->pos++];

			if (ch == '\n') {
				if (o > 0 && out[o - 1] == '\r')
					o--;
				out[o] = '\0';
				return 0;
			}
			if (o + 1 < outlen)
				out[o++] = ch;
		}
		ssize_t r;
		if (c->ssl != NULL) {
			int n = SSL_read(c->ssl, c->buf, sizeof(c->buf));
			r = n > 0 ? n : -1;
		} else
			r = read(c->fd, c->buf, sizeof(c->buf));
		if (r <= 0)
			return -1;
		c->len = (size_t)r;
		c->pos = 0;
	}
}

/* conn_reply - read a whole (multi-line) reply, its code or -1 */
static int
conn_reply(struct conn *c)
{
	char line[1024];

	for (;;) {
		if (conn_line(c, line, sizeof(line)) < 0 || strlen(line) < 3)
			return -1;
		if (line[3] != '-')
			return atoi(line);
	}
}

static int
conn_cmd(struct conn *c, const char *cmd, int want)
{
	if (conn_write(c, cmd, strlen(cmd)) < 0)
		return -1;
	return conn_reply(c) == want ? 0 : -1;
}

/* one_message - one connection carrying one message; 0 when sent */
static int
one_message(SSL_SESSION **sess)
{
	struct conn c = {.fd = -1};
	char cmd[600];
	int rc = -1, one = 1;

	c.fd = socket(peer.ss_family, SOCK_STREAM, 0);
	if (c.fd < 0)
		return -1;
	setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c.fd, (struct sockaddr *)&peer, peer_len) < 0)
		goto out;
	if (conn_reply(&c) != 220)
		goto out;
	snprintf(cmd, sizeof(cmd), "EHLO %s\r\n", opt_helo);
	if (conn_cmd(&c, cmd, 250) < 0)
		goto out;
	if (opt_tls) {
		if (conn_cmd(&c, "STARTTLS\r\n", 220) < 0)
			goto out;
		c.len = c.pos = 0;
		if ((c.ssl = SSL_new(ctx)) == NULL ||
		    SSL_set_fd(c.ssl, c.fd) != 1)
			goto out;
		if (opt_resume && *sess != NULL)
			SSL_set_session(c.ssl, *sess);
		if (SSL_connect(c.ssl) != 1)
			goto out;
		atomic_fetch_add(&handshakes, 1);
		if (SSL_session_reused(c.ssl))
			atomic_fetch_add(&resumed, 1);
		if (conn_cmd(&c, cmd, 250) < 0)
			goto out;
	}
	snprintf(cmd, sizeof(cmd), "MAIL FROM:<%s>\r\n", opt_from);
	if (conn_cmd(&c, cmd, 250) < 0)
		goto out;
	snprintf(cmd, sizeof(cmd), "RCPT TO:<%s>\r\n", opt_to);
	if (conn_cmd(&c, cmd, 250) < 0 || conn_cmd(&c, "DATA\r\n", 354) < 0)
		goto out;
	if (conn_write(&c, body, body_len) < 0 || conn_reply(&c) != 250)
		goto out;
	rc = 0;
	/* QUIT's 221 also lets TLS 1.3 tickets sent after the handshake in */
	if (conn_cmd(&c, "QUIT\r\n", 221) < 0)
		goto out;
	if (c.ssl != NULL) {
		if (opt_resume) {
			SSL_SESSION *s = SSL_get1_session(c.ssl);

			if (s != NULL && SSL_SESSION_is_resumable(s)) {
				SSL_SESSION_free(*sess);
				*sess = s;
			} else
				SSL_SESSION_free(s);
		}
		SSL_shutdown(c.ssl);
	}
out:
	if (c.ssl != NULL)
		SSL_free(c.ssl);
	ERR_clear_error();
	close(c.fd);
	return rc;
}

static void *
worker(void *arg)
{
	SSL_SESSION *sess = NULL;

	(void)arg;
	while (atomic_fetch_add(&claimed, 1) < opt_msgs) {
		if (one_message(&sess) == 0)
			atomic_fetch_add(&sent, 1);
		else
			atomic_fetch_add(&failed, 1);
	}
	SSL_SESSION_free(sess);
	return NULL;
}

static void
make_body(void)
{
	size_t cap = (size_t)opt_len + 512, n;

	body = malloc(cap);
	if (body == NULL)
		exit(2);
	n = (size_t)snprintf(body, cap,
	                     "From: <%s>\r\nTo: <%s>\r\nSubject: bench\r\n\r\n",
	                     opt_from, opt_to);
	while (n < (size_t)opt_len) {
		memset(body + n, 'x', 70);
		n += 70;
		body[n++] = '\r';
		body[n++] = '\n';
	}
	memcpy(body + n, ".\r\n", 3);
	body_len = n + 3;
}

static void
usage(void)
{
	fprintf(stderr, "usage: tls_source [-T] [-R] [-s sessions] "
	                "[-m messages] [-l length] [-f from] [-t to] "
	                "[-M helo] host:port\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
	struct timespec t0, t1;
	pthread_t *th;
	char *host, *port;
	int ch;

	while ((ch = getopt(argc, argv, "TRs:m:l:f:t:M:")) != -1) {
		switch (ch) {
		case 'T':
			opt_tls = 1;
			break;
		case 'R':
			opt_resume = 1;
			break;
		case 's':
			opt_sessions = atoi(optarg);
			break;
		case 'm':
			opt_msgs = atoi(optarg);
			break;
		case 'l':
			opt_len = atoi(optarg);
			break;
		case 'f':
			opt_from = optarg;
			break;
		case 't':
			opt_to = optarg;
			break;
		case 'M':
			opt_helo = optarg;
			break;
		default:
			usage();
		}
	}
	if (optind + 1 != argc || opt_sessions < 1 || opt_msgs < 1)
		usage();
	host = argv[optind];
	if ((port = strrchr(host, ':')) == NULL)
		usage();
	*port++ = '\0';
	if (getaddrinfo(host, port, &hints, &ai) != 0)
		usage();
	memcpy(&peer, ai->ai_addr, ai->ai_addrlen);
	peer_len = ai->ai_addrlen;
	freeaddrinfo(ai);
	make_body();
	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL)
		return 2;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);

	th = calloc((size_t)opt_sessions, sizeof(*th));
	if (th == NULL)
		return 2;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < opt_sessions; i++)
		if (pthread_create(&th[i], NULL, worker, NULL) != 0)
			return 2;
	for (int i = 0; i < opt_sessions; i++)
		pthread_join(th[i], NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (double)(t1.tv_sec - t0.tv_sec) +
	           (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("sent %d seconds %.3f rate %.1f handshakes %d resumed %d "
	       "failed %d\n",
	       atomic_load(&sent), s, atomic_load(&sent) / s,
	       atomic_load(&handshakes), atomic_load(&resumed),
	       atomic_load(&failed));
	return atomic_load(&failed) > 0;
}
