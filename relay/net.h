/*
 * net.h - non-blocking socket I/O shared by every connection of the
 * daemon: one read and one write over a plain or a TLS socket, the
 * result of a non-blocking connect, and the growth of an I/O buffer.
 *
 * Users: smtpd.c (inbound SMTP), smtp_client.c (outbound SMTP),
 * callout_conn.c (callouts), mtasts_fetch.c (HTTPS) and peer.c (the
 * mirror link).  Each keeps its own buffers and state machine; what is
 * here is only what they all did the same way.
 *
 * The protocol rules stay with the callers: at STARTTLS both sides
 * throw away what arrived in clear behind the command (CVE-2011-0411,
 * smtpd_cmd.c and smtp_client.c); net_read never buffers anything, so
 * there is nothing here to discard.
 */
#ifndef BACKMX_NET_H
#define BACKMX_NET_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <sys/types.h>

/*
 * net_read - read at most len octets from fd, through ssl when it is not
 * NULL (recv(2) otherwise).  Returns >0 octets, 0 at the end of input
 * (EOF, TLS close_notify), -1 with errno: EAGAIN when nothing can be
 * done now (retry when *want is ready), EINTR, the socket's errno, or
 * ECONNRESET for a failed TLS connection (net_error() says why).
 * *want (may be NULL) becomes TLS_WANT_READ/TLS_WANT_WRITE (tls.h) when
 * TLS waits for the socket, 0 otherwise.
 */
ssize_t net_read(int fd, SSL *ssl, void *buf, size_t len, int *want);
/*
 * net_write - write at most len octets, like net_read: >0 octets
 * written, -1 with errno (EAGAIN, EINTR, the socket's errno, EPIPE for a
 * failed TLS connection).  Plain writes use send(MSG_NOSIGNAL): a peer
 * that went away is an error, never a SIGPIPE.
 */
ssize_t net_write(int fd, SSL *ssl, const void *buf, size_t len, int *want);
/*
 * net_error - why the last net_read/net_write failed on TLS: the
 * OpenSSL error, else the system error, else "connection lost".  The
 * OpenSSL error queue is empty afterwards.
 */
const char *net_error(void);

/*
 * net_connect_result - after a non-blocking connect(2) reported the
 * socket writable: 0 connected, else the errno of the failed connect
 */
int net_connect_result(int fd);

/*
 * net_grow - make room for need octets in total in buf (capacity *cap):
 * the capacity doubles from first (when buf is empty) until need fits.
 * Returns the buffer, maybe moved, with *cap updated; NULL when the new
 * capacity would pass max (0: no limit) or memory ran out: then buf and
 * *cap are unchanged and still valid.
 */
void *net_grow(void *buf, size_t *cap, size_t need, size_t first, size_t max);

#endif
