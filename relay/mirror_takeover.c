/*
 * mirror_takeover.c - takeover: when the peer has been silent for
 * `takeover_after` (or on `backmxctl takeover`), the mail held in our
 * replica of its spool becomes ours: every message is imported into our
 * spool (spool/repl_import.c, ids kept) and handed to our forwarder,
 * with its arrival time, recipients' states and retry schedule as they
 * were, so the same retry, lifetime and DSN rules apply.
 *
 * The live replica is closed and moved aside as SPOOL/replica-ID
 * (PEERID: the identity of the peer's spool) and a fresh, empty replica
 * opened in its place for the peer's return.  As messages are imported
 * and synced, their ids (the peer's) are appended to
 * SPOOL/taken/PEERID.ids, so that the peer, when it comes back with that
 * spool, learns what it must not deliver again (mirror.c sends the
 * list, once the import is complete).  After the import the directory
 * is removed.  A directory SPOOL/replica-* found at start (a stop or
 * crash in the middle) is imported again: what is in our spool already
 * is skipped and listed.
 *
 * A replica kept aside as SPOOL/replica-ID (the peer came back with a
 * new disk: its old spool is gone for good) is taken over at once.
 *
 * Called on the loop's thread.  The import is made in steps of about
 * 10 ms, one per loop iteration (job_cb), so a node taking over a large
 * replica goes on answering SMTP meanwhile.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backmxd.h"
#include "forward.h"
#include "log.h"
#include "mirror.h"
#include "mirror_int.h"
#include "peer.h"

#define TAKEOVER_CACHE (8u * 1024 * 1024)

struct takeover_ids {
	char (*id)[SPOOL_ID_LEN + 1];
	size_t n, cap;
};

static ev_timer takeover_timer;
static long takeover_after;
static double takeover_since; /* ev_now() at start: "silent since" */
static enum mirror_takeover_state takeover_state;
static struct mirror_takeover_stats takeover_st;
static int takeover_hold;
static double takeover_hold_since;

enum mirror_takeover_state
mirror_takeover_state(void)
{
	return takeover_state;
}

void
mirror_takeover_status(struct mirror_takeover_stats *st)
{
	*st = takeover_st;
}

static int
ids_add(struct takeover_ids *l, const char *id)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 256;
		void *p = realloc(l->id, cap * sizeof(*l->id));

		if (p == NULL)
			return -1;
		l->id = p;
		l->cap = cap;
	}
	memcpy(l->id[l->n++], id, SPOOL_ID_LEN + 1);
	return 0;
}

/* remove_dir - a flat BDB environment directory */
static int
remove_dir(const char *dir)
{
	char path[4400];
	struct dirent *de;
	DIR *d;

	if ((d = opendir(dir)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (unlink(path) < 0)
			log_warn("takeover: removing %s: %m", path);
	}
	closedir(d);
	return rmdir(dir);
}

/*
 * The import, a step per loop iteration.  A job is one directory (a
 * replica moved aside as SPOOL/replica-ID, closed); jobs run one after
 * another.  Each step imports messages for at most TAKEOVER_STEP
 * seconds (TAKEOVER_BATCH at a time), syncs our spool once, appends the
 * peer's ids of what it took to SPOOL/taken/PEERID.ids (fsync: the list
 * the peer gets back, so it only ever names messages our disk holds)
 * and hands the new messages to the forwarder.  In between, the loop
 * answers SMTP, the peer link and everything else.
 */
#define TAKEOVER_BATCH 32
#define TAKEOVER_STEP 0.010 /* seconds of importing per loop iteration */

struct takeover_job {
	char dir[4200];
	int reopen; /* the live replica could not be moved: reopen after */
	struct spool *src;
	uint64_t peerid;
	FILE *list;
	char after[SPOOL_ID_LEN + 1];
	struct spool_import_stats st;
	double started;
	unsigned long steps; /* loop iterations the import took */
	struct takeover_job *next;
};

struct takeover_step {
	struct takeover_ids fwd;  /* stored ids: to the forwarder */
	struct takeover_ids orig; /* the peer's ids: to the list */
};

static struct takeover_job *job_head, **job_tail = &job_head;
static ev_timer job_timer;
static int job_list_wanted; /* the peer is back: send its list when done */

/* imported_cb - one message is ours (fwd; e NULL: imported before) */
static void
imported_cb(void *arg, const struct spool_envelope *e, const char *origin)
{
	struct takeover_step *t = arg;

	if (e != NULL && strcmp(e->id, origin) != 0)
		log_warn("%s: taken over from the peer's spool as %s (its id "
		         "was taken here)",
		         origin, e->id);
	if ((e != NULL && ids_add(&t->fwd, e->id) < 0) ||
	    ids_add(&t->orig, origin) < 0)
		log_err("%s: out of memory: delivered at the next restart",
		        e != NULL ? e->id : origin);
}

/* job_open - the job's spool and list; -1 with err */
static int
job_open(struct takeover_job *j, char *err, size_t errlen)
{
	struct spool_options so;
	char path[4200], why[512];
	uint64_t msgs, bytes;

	memset(&so, 0, sizeof(so));
	so.cache_bytes = TAKEOVER_CACHE;
	so.repl_role = SPOOL_REPL_NONE; /* ours now: read as a plain spool */
	if ((j->src = spool_open_opts(j->dir, &so, NULL, why, sizeof(why))) ==
	    NULL) {
		snprintf(err, errlen, "opening %s: %s", j->dir, why);
		return -1;
	}
	j->peerid = spool_repl_id_get(j->src, SPOOL_REPL_MASTER_FILE);
	/* a directory of its own: BDB reads every file of the spool's
	 * directory when it rebuilds a replica (internal init) */
	snprintf(path, sizeof(path), "%s/taken", backmxd.cfg->spool);
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/taken/%016llx.ids", backmxd.cfg->spool,
	         (unsigned long long)j->peerid);
	if ((j->list = fopen(path, "ae")) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	j->started = ev_time();
	spool_count(j->src, &msgs, &bytes);
	log_info("takeover: importing %s (the peer's spool %016llx, %llu "
	         "message(s), %llu octets), a batch per loop iteration",
	         j->dir, (unsigned long long)j->peerid,
	         (unsigned long long)msgs, (unsigned long long)bytes);
	return 0;
}

static void
job_free(struct takeover_job *j)
{
	if (j->src != NULL)
		spool_close(j->src);
	if (j->list != NULL)
		fclose(j->list);
	free(j);
}

/* job_pop - the head is done (ok) or failed: unlink and free it */
static void
job_pop(int ok)
{
	struct takeover_job *j = job_head;

	if ((job_head = j->next) == NULL)
		job_tail = &job_head;
	if (ok) {
		spool_close(j->src);
		j->src = NULL;
		/* everything is in our spool and synced: the copy can go
		 * (before the log line, which says it is done) */
		if (remove_dir(j->dir) < 0)
			log_warn("takeover: cannot remove %s: %m", j->dir);
		log_warn("takeover: %llu message(s) (%llu octets) of the "
		         "peer's spool %016llx are ours now (%llu imported "
		         "before, %llu under a new id, %.1fs in %lu step(s)); "
		         "the list is in taken/%016llx.ids",
		         (unsigned long long)j->st.imported,
		         (unsigned long long)j->st.bytes,
		         (unsigned long long)j->peerid,
		         (unsigned long long)j->st.already,
		         (unsigned long long)j->st.reid, ev_time() - j->started,
		         j->steps, (unsigned long long)j->peerid);
	}
	if (j->reopen)
		mirror_replica_reopen();
	job_free(j);
	if (job_head == NULL && job_list_wanted) {
		job_list_wanted = 0;
		if (peer_up(PEER_CH_REPLICA))
			mirror_takeover_send_list(
			    peer_incarnation(PEER_CH_REPLICA));
	}
}

/* job_step - import for at most TAKEOVER_STEP seconds: 1 more to do,
 * 0 done, -1 failed (err) */
static int
job_step(struct takeover_job *j, char *err, size_t errlen)
{
	struct takeover_step t = {{NULL, 0, 0}, {NULL, 0, 0}};
	struct spool_import_stats st = {0};
	double t0 = ev_time();
	int n = 0, rc = 1;

	j->steps++;
	do {
		n = spool_import_some(backmxd.spool, j->src, j->after,
		                      TAKEOVER_BATCH, imported_cb, &t, &st);
	} while (n > 0 && ev_time() - t0 < TAKEOVER_STEP);
	if (n < 0 || spool_sync(backmxd.spool) < 0) {
		snprintf(err, errlen, "importing %s: %s", j->dir,
		         spool_error(backmxd.spool));
		rc = -1;
		goto out;
	}
	for (size_t i = 0; i < t.orig.n; i++)
		if (fprintf(j->list, "%s\n", t.orig.id[i]) < 0)
			break;
	if (fflush(j->list) != 0 || fsync(fileno(j->list)) != 0) {
		snprintf(err, errlen, "writing taken/%016llx.ids failed",
		         (unsigned long long)j->peerid);
		rc = -1;
		goto out;
	}
	for (size_t i = 0; i < t.fwd.n; i++) {
		struct spool_envelope *e =
		    spool_envelope_get(backmxd.spool, t.fwd.id[i]);

		if (e == NULL)
			continue;
		log_svc("qmgr", LOG_INFO, e->id,
		        "from=<%s>, size=%llu, nrcpt=%d (queue active, taken "
		        "over from the peer)",
		        e->sender, (unsigned long long)e->size, e->nrcpt);
		forward_queued(e);
		spool_envelope_free(e);
	}
	if (n == 0)
		rc = 0;
out:
	j->st.imported += st.imported;
	j->st.bytes += st.bytes;
	j->st.already += st.already;
	j->st.reid += st.reid;
	takeover_st.messages += st.imported;
	takeover_st.bytes += st.bytes;
	takeover_st.already += st.already;
	takeover_st.reid += st.reid;
	free(t.fwd.id);
	free(t.orig.id);
	return rc;
}

static void
job_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct takeover_job *j = job_head;
	char err[8192];
	int r;

	(void)w;
	(void)revents;
	if (j == NULL)
		return;
	if (j->src == NULL && job_open(j, err, sizeof(err)) < 0)
		r = -1;
	else
		r = job_step(j, err, sizeof(err));
	if (r < 0) {
		/* left as it is: the next takeover or start tries again */
		log_err("takeover: %s", err);
		job_pop(0);
	} else if (r == 0)
		job_pop(1);
	if (job_head != NULL) {
		/* at once, after what the loop has to do meanwhile */
		ev_timer_set(&job_timer, 0., 0.);
		ev_timer_start(loop, &job_timer);
	}
}

/* job_add - take the spool in dir over (from the next loop iteration) */
static void
job_add(const char *dir, int reopen)
{
	struct takeover_job *j;

	for (j = job_head; j != NULL; j = j->next)
		if (strcmp(j->dir, dir) == 0)
			return; /* under way */
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		log_err("takeover of %s: out of memory", dir);
		return;
	}
	snprintf(j->dir, sizeof(j->dir), "%s", dir);
	j->reopen = reopen;
	*job_tail = j;
	job_tail = &j->next;
	if (!ev_is_active(&job_timer)) {
		ev_timer_set(&job_timer, 0., 0.);
		ev_timer_start(backmxd.loop, &job_timer);
	}
}

/* jobs_aside - every SPOOL/replica-* (replicas moved aside) */
static void
jobs_aside(void)
{
	const char *spool = backmxd.cfg->spool;
	char dir[4200];
	struct dirent *de;
	DIR *d;

	if ((d = opendir(spool)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, "replica-", 8) != 0)
			continue;
		snprintf(dir, sizeof(dir), "%s/%s", spool, de->d_name);
		job_add(dir, 0);
	}
	closedir(d);
}

void
mirror_takeover_aside(const char *dir)
{
	job_add(dir, 0);
}

int
mirror_takeover_now(const char *why, char *err, size_t errlen)
{
	char dir[4200];
	int r;

	if (takeover_state == MIRROR_TAKEN_OVER) {
		snprintf(err, errlen, "the peer's mail was taken over already");
		return -1;
	}
	log_warn("takeover: %s: delivering the mail held for the peer", why);
	takeover_st.takeovers++;
	takeover_state = MIRROR_TAKEN_OVER;
	/* the live replica: closed, moved aside, imported from there; a
	 * new, empty one takes its place for the peer's return */
	r = mirror_replica_release(dir, sizeof(dir));
	if (r == 0 && mirror_replica_reopen() < 0) {
		snprintf(err, errlen, "cannot open a new replica");
		jobs_aside();
		return -1;
	}
	if (r == 1)
		job_add(dir, 1);
	/* with the replicas of the peer's older spools kept aside */
	jobs_aside();
	return 0;
}

/* mirror_takeover_heard - the peer is back: it delivers its new mail */
void
mirror_takeover_heard(void)
{
	if (takeover_state != MIRROR_TAKEN_OVER)
		return;
	takeover_state = MIRROR_NORMAL;
	log_warn("takeover: the peer is back; each node delivers its own "
	         "spool again");
}

static void
takeover_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	double heard = peer_last_heard(), now = ev_now(loop);
	char err[1024], why[128];

	(void)w;
	(void)revents;
	if (takeover_state == MIRROR_TAKEN_OVER)
		return;
	if (heard < takeover_since)
		heard = takeover_since;
	if (now - heard < (double)takeover_after)
		return;
	snprintf(why, sizeof(why), "the peer has been silent for %.0fs",
	         now - heard);
	if (mirror_takeover_now(why, err, sizeof(err)) < 0)
		log_err("takeover: %s", err);
}

static void taken_prune(uint64_t current);

void
mirror_takeover_init(long after)
{
	takeover_after = after;
	takeover_since = ev_now(backmxd.loop);
	takeover_hold_since = takeover_since;
	takeover_hold = 1; /* forwarding waits for the peer's list */
	ev_timer_init(&takeover_timer, takeover_cb, 1., 1.);
	ev_timer_start(backmxd.loop, &takeover_timer);
	ev_init(&job_timer, job_cb);
	taken_prune(0);
	/* replicas moved aside and not imported yet (a stop or crash in
	 * the middle of a takeover): the mail is ours, go on */
	jobs_aside();
}

void
mirror_takeover_shutdown(void)
{
	struct takeover_job *j;

	ev_timer_stop(backmxd.loop, &takeover_timer);
	ev_timer_stop(backmxd.loop, &job_timer);
	/* what is imported is synced and listed; the rest of each
	 * directory is imported at the next start */
	while ((j = job_head) != NULL) {
		if (j->src != NULL)
			log_info("takeover: stopped in the import of %s (%llu "
			         "message(s) done); it goes on at the next "
			         "start",
			         j->dir, (unsigned long long)j->st.imported);
		job_head = j->next;
		job_free(j);
	}
	job_tail = &job_head;
}

/* ------------------------------------------------------------------ */
/* The list of what was taken over, both ways */

#define TAKEN_BATCH 4096            /* ids per TAKEN frame */
#define TAKEN_DONE_KEEP (7 * 86400) /* seconds an applied list is kept */

static void
taken_send(const uint8_t *ids, size_t n, uint64_t inc, int last)
{
	uint8_t hdr[PEER_FRAME_FIXED];
	int h = peer_frame_taken(hdr, inc, last, n);

	if (h > 0 && peer_send(PEER_CH_REPLICA, hdr, (size_t)h, ids,
	                       n * PEER_ID_LEN, NULL, 0) == 0)
		takeover_st.list_sent += n;
}

void
mirror_takeover_send_list(uint64_t inc)
{
	char path[4200], line[64];
	uint8_t *buf;
	size_t n = 0;
	FILE *fp = NULL;

	if (job_head != NULL) {
		/* a takeover is importing: the list is sent when it is
		 * complete (job_pop) */
		job_list_wanted = 1;
		return;
	}
	taken_prune(inc);
	if ((buf = malloc(TAKEN_BATCH * PEER_ID_LEN)) == NULL)
		return; /* the peer waits takeover_after, then delivers */
	snprintf(path, sizeof(path), "%s/taken/%016llx.ids", backmxd.cfg->spool,
	         (unsigned long long)inc);
	if (inc != 0)
		fp = fopen(path, "re");
	while (fp != NULL && fgets(line, sizeof(line), fp) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if (strlen(line) != SPOOL_ID_LEN ||
		    strspn(line, "0123456789abcdef") != SPOOL_ID_LEN)
			continue;
		memcpy(buf + n * PEER_ID_LEN, line, PEER_ID_LEN);
		if (++n == TAKEN_BATCH) {
			taken_send(buf, n, inc, 0);
			n = 0;
		}
	}
	if (fp != NULL)
		fclose(fp);
	taken_send(buf, n, inc, 1);
	free(buf);
}

/*
 * taken_prune - SPOOL/taken/ID.ids.done: kept TAKEN_DONE_KEEP after the
 * list was applied, for the operator, then removed (one file stayed for
 * every takeover ever made).  current: the peer's spool now (0 when not
 * known); a list for another spool of the peer will never be applied
 * (it came back with a new disk): marked done too.
 */
static void
taken_prune(uint64_t current)
{
	char dir[4200], path[4600];
	struct dirent *de;
	struct stat st;
	double now = ev_now(backmxd.loop);
	size_t len;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/taken", backmxd.cfg->spool);
	if ((d = opendir(dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		len = strlen(de->d_name);
		if (current != 0 && len == 20 &&
		    strcmp(de->d_name + 16, ".ids") == 0 &&
		    strtoull(de->d_name, NULL, 16) != current) {
			char done[4700];

			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
			snprintf(done, sizeof(done), "%s.done", path);
			if (rename(path, done) == 0) {
				utimensat(AT_FDCWD, done, NULL, 0);
				log_info("takeover: %s is of a spool the peer "
				         "no longer has (it came back with a "
				         "new one): never to be applied",
				         path);
			}
			continue;
		}
		if (len < 9 || strcmp(de->d_name + len - 9, ".ids.done") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (stat(path, &st) < 0 ||
		    now - (double)st.st_mtime < TAKEN_DONE_KEEP)
			continue;
		if (unlink(path) == 0)
			log_info("takeover: removed %s (applied more than %d "
			         "days ago)",
			         path, TAKEN_DONE_KEEP / 86400);
		else
			log_warn("takeover: removing %s: %m", path);
	}
	closedir(d);
}

void
mirror_takeover_list_done(uint64_t inc)
{
	char path[4200], done[4300];

	snprintf(path, sizeof(path), "%s/taken/%016llx.ids", backmxd.cfg->spool,
	         (unsigned long long)inc);
	snprintf(done, sizeof(done), "%s.done", path);
	if (rename(path, done) == 0) {
		/* its age is counted from now (taken_prune) */
		utimensat(AT_FDCWD, done, NULL, 0);
		log_info("takeover: the peer has applied the list of the mail "
		         "we delivered for it (%s)",
		         done);
	}
	taken_prune(0);
}

/*
 * mirror_takeover_list_in - the peer's TAKEN frame on our own spool's
 * link: these messages of ours it delivered while it had taken over.
 * Those still here are removed without delivery; those gone (we
 * delivered them before we were lost) were delivered twice: counted.
 */
int
mirror_takeover_list_in(const struct peer_frame *f, uint64_t ours)
{
	uint32_t i;

	if (f->incarnation == ours && ours != 0) {
		for (i = 0; i < f->nids; i++) {
			char id[SPOOL_ID_LEN + 1];
			struct spool_envelope *e;

			memcpy(id, f->ids + (size_t)i * PEER_ID_LEN,
			       PEER_ID_LEN);
			id[SPOOL_ID_LEN] = '\0';
			if ((e = spool_envelope_get(backmxd.spool, id)) ==
			    NULL) {
				takeover_st.duplicates++;
				log_warn(
				    "%s: delivered by the peer while it had "
				    "taken over, and by us before we were "
				    "lost: a duplicate",
				    id);
				continue;
			}
			spool_envelope_free(e);
			schedule_remove(backmxd.sched, id);
			if (spool_message_delete(backmxd.spool, id) < 0) {
				log_err("%s: cannot remove from the spool: %s",
				        id, spool_error(backmxd.spool));
				continue;
			}
			takeover_st.not_redelivered++;
			log_msg(id, "removed: the peer delivered it while it "
			            "had taken over");
		}
	}
	if (!f->last)
		return 0;
	if (spool_sync(backmxd.spool) < 0) {
		log_err("spool sync: %s", spool_error(backmxd.spool));
		return 0; /* no STATE: the peer sends the list again */
	}
	if (takeover_hold) {
		takeover_hold = 0;
		log_info("takeover: the peer's list is in (%llu removed, %llu "
		         "duplicates so far); forwarding our spool",
		         (unsigned long long)takeover_st.not_redelivered,
		         (unsigned long long)takeover_st.duplicates);
	}
	return 1; /* applied: tell the peer */
}

int
mirror_forward_held(void)
{
	if (!takeover_hold)
		return 0;
	if (ev_now(backmxd.loop) - takeover_hold_since >=
	    (double)takeover_after) {
		takeover_hold = 0;
		log_warn("takeover: no word from the peer for %lds: forwarding "
		         "our spool without its list",
		         takeover_after);
		return 0;
	}
	return 1;
}
