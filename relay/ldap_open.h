/*
 * ldap_open.h - opening and binding an ldap:FILE connection without
 * blocking the event loop: resolve, TCP connect, StartTLS (or
 * ldaps://) with the directory's certificate verified, simple bind, all
 * in a short-lived worker thread bounded by the FILE's timeout per step.
 *
 * cb(arg, ld, why) runs on the loop, never inside ldap_open_start:
 * ld is the bound handle (the callback owns it, unbinds it), or NULL
 * and why says what failed.  ldap_open_cancel stops cb from running
 * (the handle, if one comes, is unbound); not from inside cb.
 */
#ifndef BACKMX_LDAP_OPEN_H
#define BACKMX_LDAP_OPEN_H

#include <ldap.h>
#include <stddef.h>

#include "ldap_src.h"

struct ldap_open;
typedef void (*ldap_open_cb)(void *arg, LDAP *ld, const char *why);

/* ldap_open_start - NULL (why set, cb never runs) when it cannot start */
struct ldap_open *ldap_open_start(const struct ldap_cfg *cfg, ldap_open_cb cb,
                                  void *arg, char *why, size_t whylen);
void ldap_open_cancel(struct ldap_open *o);
/* ldap_open_shutdown - no callback any more; running threads clean up */
void ldap_open_shutdown(void);

#endif
