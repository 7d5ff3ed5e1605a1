/*
 * ldap_result.h - what an ldap:FILE lookup makes of the directory's
 * answers, as libldap decoded them from the connection (ldap_result.c).
 * Used by ldap_src.c on the loop and by tests/fuzz/fuzz_ldap.c, which
 * feeds it hostile BER.
 */
#ifndef BACKMX_LDAP_RESULT_H
#define BACKMX_LDAP_RESULT_H

#include <ldap.h>

#include "policy.h"

/* the largest LDAP message taken from a directory */
#define LDAP_REPLY_MAX (1024 * 1024)

/*
 * ldap_result_limit - a BER message over LDAP_REPLY_MAX on ld's
 * connection is an error, not a buffer of the size a hostile directory
 * announces (libldap's client default is no limit)
 */
void ldap_result_limit(LDAP *ld);

/*
 * ldap_result_nonblock - ld's connection made non-blocking, once it is
 * bound and handed to the loop: libldap's own socket is blocking, and
 * ldap_result, even with a zero timeout, then waits in read() for the
 * rest of a message a directory began and stalled in (the whole loop
 * with it).  0, or -1 (no connection)
 */
int ldap_result_nonblock(LDAP *ld);

/*
 * ldap_result_next - one complete search result from ld without waiting.
 * 1: *msgid is the search it answers, *a its answer (an entry = yes;
 * none and success or noSuchObject = no; anything else = unknown, with
 * *why set to a static text); 0: nothing complete yet; -1: the
 * connection failed (*why says why; ld must be unbound).
 */
int ldap_result_next(LDAP *ld, int *msgid, enum policy_answer *a,
                     const char **why);

#endif
