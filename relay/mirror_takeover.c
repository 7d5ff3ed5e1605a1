/*
 * mirror_takeover.c - takeover: when the peer has been silent for
 * `takeover_after` (or on `backmxctl takeover`), the mail held in our
 * replica of its spool becomes ours: every message is imported into our
 * spool (spool/repl_import.c, ids kept) and handed to our forwarder,
 * with its arrival time, recipients' states and retry schedule as they
 * were, so the same retry, lifetime and DSN rules apply.
 *
 * Before the import the ids taken over are written to
 * SPOOL/taken/PEERID.ids (PEERID: the identity of the peer's spool), so
 * that the peer, when it comes back with that spool, learns what it
 * must not deliver again (mirror.c sends the list).  After the import
 * and one sync the replica directory is removed and a fresh, empty
 * replica is opened for the peer's return.
 *
 * A replica kept aside as SPOOL/replica-ID (the peer came back with a
 * new disk: its old spool is gone for good) is taken over at once.
 *
 * Called on the loop's thread; the import is synchronous (a 500-message
 * replica takes well under a second).
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

/* ids_cb - the ids of the replica, for the list the peer gets back */
static int
ids_cb(void *arg, const struct spool_envelope *e)
{
	FILE *fp = arg;

	return fprintf(fp, "%s\n", e->id) < 0;
}

/* imported_cb - one message is ours now (forwarded after the sync) */
static void
imported_cb(void *arg, const struct spool_envelope *e, const char *origin)
{
	struct takeover_ids *l = arg;

	if (strcmp(e->id, origin) != 0)
		log_warn("%s: taken over from the peer's spool as %s (its id "
		         "was taken here)",
		         origin, e->id);
	if (ids_add(l, e->id) < 0)
		log_err("%s: out of memory: delivered at the next restart",
		        e->id);
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

/* ids_list_write - SPOOL/taken/PEERID.ids gets the ids of src (fsync) */
static int
ids_list_write(struct spool *src, uint64_t peerid, char *err, size_t errlen)
{
	char path[4200];
	FILE *fp;
	int bad;

	/* a directory of its own: BDB reads every file of the spool's
	 * directory when it rebuilds a replica (internal init) */
	snprintf(path, sizeof(path), "%s/taken", backmxd.cfg->spool);
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/taken/%016llx.ids", backmxd.cfg->spool,
	         (unsigned long long)peerid);
	if ((fp = fopen(path, "ae")) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	bad = spool_scan(src, "", 0, ids_cb, fp) < 0;
	bad |= fflush(fp) != 0 || fsync(fileno(fp)) != 0;
	bad |= fclose(fp) != 0;
	if (bad) {
		snprintf(err, errlen, "writing %s failed", path);
		return -1;
	}
	return 0;
}

/*
 * takeover_dir - import the spool in dir (a replica, closed) into ours;
 * 0 when done (dir removed), -1 with err set (dir left as it was)
 */
static int
takeover_dir(const char *dir, char *err, size_t errlen)
{
	struct spool_options so;
	struct spool_import_stats st;
	struct takeover_ids l = {NULL, 0, 0};
	struct spool *src;
	uint64_t peerid;
	char why[512];

	memset(&so, 0, sizeof(so));
	so.cache_bytes = TAKEOVER_CACHE;
	so.repl_role = SPOOL_REPL_NONE; /* ours now: read as a plain spool */
	if ((src = spool_open_opts(dir, &so, NULL, why, sizeof(why))) == NULL) {
		snprintf(err, errlen, "opening %s: %s", dir, why);
		return -1;
	}
	peerid = spool_repl_id_get(src, SPOOL_REPL_MASTER_FILE);
	if (ids_list_write(src, peerid, err, errlen) < 0) {
		spool_close(src);
		return -1;
	}
	if (spool_import(backmxd.spool, src, imported_cb, &l, &st) < 0 ||
	    spool_sync(backmxd.spool) < 0) {
		snprintf(err, errlen, "importing %s: %s", dir,
		         spool_error(backmxd.spool));
		spool_close(src);
		free(l.id);
		return -1;
	}
	spool_close(src);
	for (size_t i = 0; i < l.n; i++) {
		struct spool_envelope *e =
		    spool_envelope_get(backmxd.spool, l.id[i]);

		if (e == NULL)
			continue;
		log_svc("qmgr", LOG_INFO, e->id,
		        "from=<%s>, size=%llu, nrcpt=%d (queue active, taken "
		        "over from the peer)",
		        e->sender, (unsigned long long)e->size, e->nrcpt);
		forward_queued(e);
		spool_envelope_free(e);
	}
	free(l.id);
	takeover_st.messages += st.imported;
	takeover_st.bytes += st.bytes;
	takeover_st.already += st.already;
	takeover_st.reid += st.reid;
	/* everything is in our spool and synced: the copy can go (before
	 * the log line, which says it is done) */
	if (remove_dir(dir) < 0)
		log_warn("takeover: cannot remove %s: %m", dir);
	log_warn("takeover: %llu message(s) (%llu octets) of the peer's spool "
	         "%016llx are ours now (%llu imported before, %llu under a "
	         "new id); the list is in taken/%016llx.ids",
	         (unsigned long long)st.imported, (unsigned long long)st.bytes,
	         (unsigned long long)peerid, (unsigned long long)st.already,
	         (unsigned long long)st.reid, (unsigned long long)peerid);
	return 0;
}

int
mirror_takeover_aside(const char *dir)
{
	char err[1024];

	if (takeover_dir(dir, err, sizeof(err)) < 0) {
		log_err("takeover of the peer's old spool: %s", err);
		return -1;
	}
	return 0;
}

int
mirror_takeover_now(const char *why, char *err, size_t errlen)
{
	const char *spool = backmxd.cfg->spool;
	char dir[4200];
	struct dirent *de;
	DIR *d;
	int rc = 0;

	if (takeover_state == MIRROR_TAKEN_OVER) {
		snprintf(err, errlen, "the peer's mail was taken over already");
		return -1;
	}
	log_warn("takeover: %s: delivering the mail held for the peer", why);
	takeover_st.takeovers++;
	/* the live replica: closed, imported, replaced by an empty one */
	if (mirror_replica_release(dir, sizeof(dir)) == 0 &&
	    takeover_dir(dir, err, errlen) < 0)
		rc = -1;
	if (mirror_replica_reopen() < 0 && rc == 0) {
		snprintf(err, errlen, "cannot open a new replica");
		rc = -1;
	}
	/* replicas of the peer's older spools kept aside */
	if ((d = opendir(spool)) != NULL) {
		while ((de = readdir(d)) != NULL) {
			char e2[1024];

			if (strncmp(de->d_name, "replica-", 8) != 0)
				continue;
			snprintf(dir, sizeof(dir), "%s/%s", spool, de->d_name);
			if (takeover_dir(dir, e2, sizeof(e2)) < 0) {
				log_err("takeover: %s", e2);
				if (rc == 0)
					snprintf(err, errlen, "%s", e2);
				rc = -1;
			}
		}
		closedir(d);
	}
	takeover_state = MIRROR_TAKEN_OVER;
	return rc;
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
	taken_prune(0);
}

void
mirror_takeover_shutdown(void)
{
	ev_timer_stop(backmxd.loop, &takeover_timer);
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
