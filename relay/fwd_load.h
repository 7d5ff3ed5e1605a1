/*
 * fwd_load.h - the forwarder's schedule loaded from the next-attempt
 * index after the start, on the loop (fwd_load.c); its state is
 * fw->load (fwd_int.h)
 */
#ifndef BACKMX_FWD_LOAD_H
#define BACKMX_FWD_LOAD_H

struct forwarder;

/* fwd_load_start - begin loading: fw->load_batch keys per loop iteration */
void fwd_load_start(struct forwarder *fw);
/* fwd_load_finish - the rest at once (flush, ETRN); 0, -1 on a spool
 * error (the load then goes on in the background) */
int fwd_load_finish(struct forwarder *fw);
/* fwd_load_pending - 1 while index keys are left to load */
int fwd_load_pending(const struct forwarder *fw);
/* fwd_load_stop - at shutdown */
void fwd_load_stop(struct forwarder *fw);

#endif
