/*
 * config_rcpt.h - the directives of recipients the primary knows, parsed
 * for config.c: in a domain block `recipients SOURCE...`, `verify_cache
 * POS NEG`, `verify_down accept-known|tempfail`, `accept_when
 * always|primary-down`; globally `callout_timeout`, `callout_limit`,
 * `callout_rate`, `verify_cache_max`.  config.c calls these with one
 * line each and lends its diagnostics (config_msg) and path resolution.
 */
#ifndef BACKMX_CONFIG_RCPT_H
#define BACKMX_CONFIG_RCPT_H

#include "config.h"

struct config_ctx;

/* shared by config.c */
void config_msg(struct config_ctx *x, int is_error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
char *config_path(struct config_ctx *x, const char *v);
int config_is_domain_keyword(const char *s);

void config_rcpt_defaults(struct config *c);
/* config_rcpt_is_keyword - a domain directive parsed here? */
int config_rcpt_is_keyword(const char *kw);
/*
 * config_rcpt_domain - tok[i] is one of ours: take its values (up to
 * the next domain keyword, "{" or "}") and return the index after them
 */
int config_rcpt_domain(struct config_ctx *x, struct policy_domain *d,
                       char **tok, int n, int i);
/* config_rcpt_domain_end - checks when d's block closes (-t) */
void config_rcpt_domain_end(struct config_ctx *x, struct policy_domain *d);
/* config_rcpt_global - 1 when kw was one of ours (handled), else 0 */
int config_rcpt_global(struct config_ctx *x, struct config *c, const char *kw,
                       char **v, int nv);
/*
 * config_rcpt_emptied - a reload's check: the first domain of nc whose
 * recipients files now give no entry while old's gave some (a file cut
 * short or emptied by a failed copy would make us refuse all its mail
 * with 550).  1 with a message in msg, 0 when none.
 */
int config_rcpt_emptied(const struct config *old, const struct config *nc,
                        char *msg, size_t msglen);

#endif
