/*
 * net.c - the one place where connections of the daemon read and write
 * their sockets, plain or TLS (net.h says who uses it and what it
 * returns).  No buffers and no protocol: callers own both.
 *
 * TLS: the OpenSSL error queue is cleared before every call, so that
 * SSL_get_error() speaks of this call only, and it is left empty after
 * a failure (net_error() keeps the text).  A failure of TLS shows as
 * ECONNRESET on read and EPIPE on write: the callers treat both as a
 * lost connection.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>

#include "net.h"
#include "tls.h"

static char net_why[256] = "connection lost";

/* net_tls_failed - note why the TLS call failed (e from SSL_get_error) */
static void
net_tls_failed(int e)
{
	int sys = errno;

	if (ERR_peek_error() != 0)
		snprintf(net_why, sizeof(net_why), "%s", tls_errstr());
	else if (e == SSL_ERROR_SYSCALL && sys != 0)
		snprintf(net_why, sizeof(net_why), "%s", strerror(sys));
	else
		snprintf(net_why, sizeof(net_why), "connection lost");
	ERR_clear_error();
}

/* net_tls_wait - SSL_ERROR_WANT_*: set *want, errno EAGAIN; else 0 */
static int
net_tls_wait(int e, int *want)
{
	if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
		return 0;
	if (want != NULL)
		*want =
		    e == SSL_ERROR_WANT_READ ? TLS_WANT_READ : TLS_WANT_WRITE;
	errno = EAGAIN;
	return 1;
}

ssize_t
net_read(int fd, SSL *ssl, void *buf, size_t len, int *want)
{
	int r, e;

	if (want != NULL)
		*want = 0;
	if (ssl == NULL)
		return recv(fd, buf, len, 0);
	if (len > INT_MAX)
		len = INT_MAX;
	ERR_clear_error();
	errno = 0;
	r = SSL_read(ssl, buf, (int)len);
	if (r > 0)
		return r;
	e = SSL_get_error(ssl, r);
	if (net_tls_wait(e, want))
		return -1;
	if (e == SSL_ERROR_ZERO_RETURN)
		return 0;
	net_tls_failed(e);
	errno = ECONNRESET;
	return -1;
}

ssize_t
net_write(int fd, SSL *ssl, const void *buf, size_t len, int *want)
{
	int r, e;

	if (want != NULL)
		*want = 0;
	if (ssl == NULL)
		return send(fd, buf, len, MSG_NOSIGNAL);
	if (len > INT_MAX)
		len = INT_MAX;
	ERR_clear_error();
	errno = 0;
	r = SSL_write(ssl, buf, (int)len);
	if (r > 0)
		return r;
	e = SSL_get_error(ssl, r);
	if (net_tls_wait(e, want))
		return -1;
	net_tls_failed(e);
	errno = EPIPE;
	return -1;
}

const char *
net_error(void)
{
	return net_why;
}

int
net_connect_result(int fd)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	return err;
}

void *
net_grow(void *buf, size_t *cap, size_t need, size_t first, size_t max)
{
	size_t ncap = *cap ? *cap : first;
	void *nb;

	if (ncap == 0)
		ncap = 1;
	while (ncap < need) {
		if (ncap > SIZE_MAX / 2)
			return NULL;
		ncap *= 2;
	}
	if (max != 0 && ncap > max)
		return NULL;
	if (ncap == *cap && buf != NULL)
		return buf;
	if ((nb = realloc(buf, ncap)) == NULL)
		return NULL;
	*cap = ncap;
	return nb;
}
