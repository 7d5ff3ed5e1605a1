/*
 * config_peer.h - the mirrored-spool directives of backmx.conf: `peer
 * NAME ADDR:PORT`, `peer_listen ADDR:PORT`, `peer_cert`, `peer_key`,
 * `peer_ca`, `peer_ack peer [TIMEOUT]|local`, `takeover_after DURATION`.
 *
 * config.c calls config_peer_global() for each global line it does not
 * know and config_peer_end() after the last line; config_free() calls
 * config_peer_free().  cfg->peer stays NULL when no peer_* directive is
 * given (a single node, no replication).  config_peer_check_files() is
 * the `backmxd -t` part: the certificate, key and CA load and match.
 */
#ifndef BACKMX_CONFIG_PEER_H
#define BACKMX_CONFIG_PEER_H

#include <stddef.h>
#include <sys/socket.h>

#include "config.h"

enum peer_ack_mode {
	PEER_ACK_PEER = 0, /* 250 only when the peer holds it too */
	PEER_ACK_LOCAL,    /* 250 on local commit, the mirror follows */
};

struct config_peer {
	char name[256];     /* the peer's certificate name */
	char addr_text[80]; /* as written: "192.0.2.21:4225" */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char listen_text[80];
	struct sockaddr_storage listen;
	socklen_t listenlen;
	int have_listen;
	char *cert, *key, *ca;
	enum peer_ack_mode ack;
	long ack_timeout;    /* peer_ack peer TIMEOUT: seconds; default 5 */
	long takeover_after; /* seconds; default 10m */
};

struct config_ctx;

/* config_peer_global - 1 when kw was one of ours (handled), else 0 */
int config_peer_global(struct config_ctx *x, struct config *c, const char *kw,
                       char **v, int nv);
/* config_peer_end - whole-file checks (all or none of the directives) */
void config_peer_end(struct config_ctx *x, struct config *c);
void config_peer_free(struct config *c);
/*
 * config_peer_check_files - `backmxd -t`: cert/key/CA readable, the key
 * matching the certificate, a CA in peer_ca.  Appends "FILE: message"
 * lines to diag; returns the number of errors.
 */
int config_peer_check_files(const struct config *c, char *diag, size_t len);
const char *config_peer_ack_str(enum peer_ack_mode m);

#endif
