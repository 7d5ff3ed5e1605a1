/*
 * rcpt_verify.h - the asynchronous half of the RCPT decision: for a
 * recipient policy_check_rcpt could not decide from the files (it
 * returned 1), ask the domain's other sources in order (ldap:FILE via
 * ldap_src.c, callout via callout.c, both through the cache in
 * spool/verify.c), apply accept_when, and combine the answers with
 * policy_rcpt_decide.
 *
 * smtpd_cmd.c calls rcpt_verify_start from its RCPT command; while it is
 * pending the session reads and runs no further command (pipelined
 * commands wait in its buffer) and resumes in the callback.
 * Ownership: the caller keeps the handle until the callback (which
 * never runs inside rcpt_verify_start) or cancels it with
 * rcpt_verify_cancel; it must not cancel from inside the callback.
 */
#ifndef BACKMX_RCPT_VERIFY_H
#define BACKMX_RCPT_VERIFY_H

#include "policy.h"

struct rcpt_verify;
typedef void (*rcpt_verify_cb)(void *arg, const struct result *res);

/* rcpt_verify_init - open the cache (after spool_open); -1 with err */
int rcpt_verify_init(char *err, size_t errlen);
struct config;
/* rcpt_verify_configure - at start and after a reload: the ldap:FILEs
 * read (again), see ldap_src_configure */
void rcpt_verify_configure(const struct config *c);
/* rcpt_verify_shutdown - cancel everything, close the cache */
void rcpt_verify_shutdown(void);

/*
 * rcpt_verify_start - decide r (r->domain set).  Returns 0 when decided
 * now (*res: 250 2.1.5, 550 5.1.1, 450 4.4.3, 451 4.7.1), or 1 when the
 * answer comes later through cb (*hp is the handle).
 */
int rcpt_verify_start(const struct policy_rcpt *r, rcpt_verify_cb cb, void *arg,
                      struct rcpt_verify **hp, struct result *res);
void rcpt_verify_cancel(struct rcpt_verify *v);

/*
 * rcpt_verify_ctl - `backmxctl verify ADDRESS [--now]`: line(arg, text)
 * for each output line, then done(arg, ok) once (never inside this
 * call).  NULL when it cannot start (err says why).
 */
struct rcpt_verify_ctl;
struct rcpt_verify_ctl *rcpt_verify_ctl_start(
    const char *address, int now, void (*line)(void *, const char *),
    void (*done)(void *, int), void *arg, char *err, size_t errlen);
void rcpt_verify_ctl_cancel(struct rcpt_verify_ctl *c);

#endif
