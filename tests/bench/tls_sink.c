/*
 * tls_sink.c - a primary that offers STARTTLS and discards what it gets,
 * for make bench (delivery over TLS in tests/bench/row_tls.sh;
 * smtp-sink has no TLS).
 *
 * usage: tls_sink -c CERT -k KEY HOST:PORT
 *
 * One thread per connection.  Banner; EHLO answers PIPELINING, 8BITMIME
 * and (before TLS) STARTTLS; STARTTLS starts a TLS server handshake
 * (session tickets and the session cache at OpenSSL's defaults);
 * MAIL/RCPT/RSET/NOOP get 250, DATA 354 then 250 after the dot, QUIT 221,
 * anything else 502.  Replies are sent when no pipelined input is left, so
 * a pipelined group costs one write.  After every message it writes
 * "mesg=N" (N: messages so far, TLS or not) and "tls=T" (how many of them
 * came over TLS) on one stdout line, like smtp-sink -c's counter, so
 * run.sh's sink_count reads it.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

static SSL_CTX *ctx;
static pthread_mutex_t count_lock = PTHREAD_MUTEX_INITIALIZER;
static long messages, tls_messages;

struct conn {
	int fd;
	SSL *ssl;
	char in[16384];
	size_t len, pos;
	char out[4096];
	size_t olen;
};

static int
conn_flush(struct conn *c)
{
	size_t off = 0;

	while (off < c->olen) {
		ssize_t w;

		if (c->ssl != NULL) {
			int r = SSL_write(c->ssl, c->out + off,
			                  (int)(c->olen - off));
			w = r > 0 ? r : -1;
		} else
			w = write(c->fd, c->out + off, c->olen - off);
		if (w < 0) {
			if (c->ssl == NULL && errno == EINTR)
				continue;
			return -1;
		}
		off += (size_t)w;
	}
	c->olen = 0;
	return 0;
}

static int
conn_say(struct conn *c, const char *s)
{
	size_t n = strlen(s);

	if (c->olen + n > sizeof(c->out) && conn_flush(c) < 0)
		return -1;
	memcpy(c->out + c->olen, s, n);
	c->olen += n;
	return 0;
}

/* conn_line - the next input line (CRLF cut) into out; replies waiting
 * are sent first when no input is buffered; -1 at EOF or error */
static int
conn_line(struct conn *c, char *out, size_t outlen)
{
	size_t o = 0;

	for (;;) {
		while (c->pos < c->len) {
			char ch = c->in[c->pos++];

			if (ch == '\n') {
				if (o > 0 && out[o - 1] == '\r')
					o--;
				out[o] = '\0';
				return 0;
			}
			if (o + 1 < outlen)
				out[o++] = ch;
		}
		if (c->olen > 0 && conn_flush(c) < 0)
			return -1;
		ssize_t r;
		if (c->ssl != NULL) {
			int n = SSL_read(c->ssl, c->in, sizeof(c->in));
			r = n > 0 ? n : -1;
		} else
			r = read(c->fd, c->in, sizeof(c->in));
		if (r <= 0)
			return -1;
		c->len = (size_t)r;
		c->pos = 0;
	}
}

static void
counted(int tls)
{
	pthread_mutex_lock(&count_lock);
	messages++;
	if (tls)
		tls_messages++;
	printf("mesg=%ld tls=%ld\n", messages, tls_messages);
	fflush(stdout);
	pthread_mutex_unlock(&count_lock);
}

static void *
session(void *arg)
{
	struct conn *c = arg;
	char line[1024];

	if (conn_say(c, "220 tls-sink ESMTP\r\n") < 0)
		goto out;
	while (conn_line(c, line, sizeof(line)) == 0) {
		if (strncasecmp(line, "EHLO", 4) == 0) {
			conn_say(c, "250-tls-sink\r\n250-PIPELINING\r\n");
			if (c->ssl == NULL)
				conn_say(c, "250-STARTTLS\r\n");
			conn_say(c, "250 8BITMIME\r\n");
		} else if (strncasecmp(line, "HELO", 4) == 0 ||
		           strncasecmp(line, "MAIL", 4) == 0 ||
		           strncasecmp(line, "RCPT", 4) == 0 ||
		           strncasecmp(line, "RSET", 4) == 0 ||
		           strncasecmp(line, "NOOP", 4) == 0) {
			conn_say(c, "250 ok\r\n");
		} else if (strncasecmp(line, "STARTTLS", 8) == 0 &&
		           c->ssl == NULL) {
			if (conn_say(c, "220 go ahead\r\n") < 0 ||
			    conn_flush(c) < 0)
				break;
			c->len = c->pos =
			    0; /* nothing sent before TLS counts */
			if ((c->ssl = SSL_new(ctx)) == NULL ||
			    SSL_set_fd(c->ssl, c->fd) != 1 ||
			    SSL_accept(c->ssl) != 1)
				break;
		} else if (strncasecmp(line, "DATA", 4) == 0) {
			conn_say(c, "354 go on\r\n");
			for (;;) {
				if (conn_line(c, line, sizeof(line)) < 0)
					goto out;
				if (strcmp(line, ".") == 0)
					break;
			}
			counted(c->ssl != NULL);
			conn_say(c, "250 queued\r\n");
		} else if (strncasecmp(line, "QUIT", 4) == 0) {
			conn_say(c, "221 bye\r\n");
			conn_flush(c);
			break;
		} else
			conn_say(c, "502 no\r\n");
	}
out:
	if (c->ssl != NULL) {
		SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
	}
	ERR_clear_error();
	close(c->fd);
	free(c);
	return NULL;
}

int
main(int argc, char **argv)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_PASSIVE},
	                *ai;
	const char *cert = NULL, *key = NULL;
	char *host, *port;
	int ch, lfd, one = 1;

	while ((ch = getopt(argc, argv, "c:k:")) != -1) {
		if (ch == 'c')
			cert = optarg;
		else if (ch == 'k')
			key = optarg;
		else
			goto usage;
	}
	if (optind + 1 != argc || cert == NULL || key == NULL)
		goto usage;
	host = argv[optind];
	if ((port = strrchr(host, ':')) == NULL)
		goto usage;
	*port++ = '\0';
	signal(SIGPIPE, SIG_IGN);
	ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL || SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		fprintf(stderr, "tls_sink: cannot load %s / %s\n", cert, key);
		return 1;
	}
	if (getaddrinfo(host, port, &hints, &ai) != 0) {
		fprintf(stderr, "tls_sink: bad address %s:%s\n", host, port);
		return 1;
	}
	lfd = socket(ai->ai_family, SOCK_STREAM, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (lfd < 0 || bind(lfd, ai->ai_addr, ai->ai_addrlen) < 0 ||
	    listen(lfd, 1024) < 0) {
		perror("tls_sink: listen");
		return 1;
	}
	freeaddrinfo(ai);
	for (;;) {
		struct conn *c;
		pthread_t th;
		int fd = accept(lfd, NULL, NULL);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED ||
			    errno == EMFILE)
				continue;
			perror("tls_sink: accept");
			return 1;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if ((c = calloc(1, sizeof(*c))) == NULL) {
			close(fd);
			continue;
		}
		c->fd = fd;
		if (pthread_create(&th, NULL, session, c) != 0) {
			close(fd);
			free(c);
			continue;
		}
		pthread_detach(th);
	}
usage:
	fprintf(stderr, "usage: tls_sink -c cert -k key host:port\n");
	return 2;
}
