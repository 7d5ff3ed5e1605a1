/*
 * smtpd_commit.c - the group commit of accepted messages.  A session
 * whose message is committed (DB_TXN_NOSYNC: in the log buffer, not yet
 * on disk) waits here in S_COMMIT; one log flush (one fsync) makes every
 * waiting message durable, and only then does each get its 250 (or the
 * 451/452 when the flush failed).
 *
 * With a threaded spool (spool_threaded: no replication) the flush runs
 * in a committer thread: the loop goes on reading the other sessions
 * while the disk syncs, and the messages that reach their final dot
 * meanwhile form the next group, flushed as soon as the current one
 * returns (a pipeline of two: one group on the disk, one filling).  The
 * group is taken in the prepare watcher, at the end of a loop turn, so
 * it holds every session the turn brought to its commit; the thread
 * flushes the whole log, which covers every commit made before the flush
 * was asked for (and maybe more: harmless).  Without a threaded spool
 * (`peer`: the replication transport belongs to the loop) the flush runs
 * on the loop in the prepare watcher.
 *
 * The thread touches nothing but spool_log_flush and its own state
 * under cm.mu; the verdicts, the error text and the state file
 * (spool_sync_done) stay on the loop.  Called by smtpd.c (init,
 * shutdown, fuzz step) and smtpd_body.c (smtpd_commit_wait).
 */
#include <pthread.h>
#include <signal.h>
#include <string.h>

#include "forward.h"
#include "log.h"
#include "smtpd_int.h"

static struct smtpd_session *wait_head, **wait_tail = &wait_head;
static struct smtpd_session *flight; /* the group being flushed */
static int flying;
static ev_prepare commit_prepare;
static ev_idle commit_idle; /* keeps the loop from blocking on waiters */
static ev_async commit_async;

/* the committer thread's state, under mu */
static struct {
	pthread_t tid;
	pthread_mutex_t mu;
	pthread_cond_t work; /* asked or stop */
	pthread_cond_t done_cv;
	int started, asked, done, stop, ret;
} cm = {.mu = PTHREAD_MUTEX_INITIALIZER,
        .work = PTHREAD_COND_INITIALIZER,
        .done_cv = PTHREAD_COND_INITIALIZER};

void
smtpd_commit_wait(struct smtpd_session *s)
{
	s->state = S_COMMIT;
	ev_io_stop(backmxd.loop, &s->rio);
	s->wait_next = NULL;
	*wait_tail = s;
	wait_tail = &s->wait_next;
	ev_idle_start(backmxd.loop, &commit_idle);
}

/* commit_take - the waiting sessions as a list; the wait list empty */
static struct smtpd_session *
commit_take(void)
{
	struct smtpd_session *list = wait_head;

	wait_head = NULL;
	wait_tail = &wait_head;
	return list;
}

/* commit_verdicts - each session of list gets the verdict of the log
 * flush that covered its commit (rc: spool_sync_done's result) */
static void
commit_verdicts(struct smtpd_session *list, int rc)
{
	struct smtpd_session *s, *next;

	for (s = list; s != NULL; s = next) {
		struct smtpd_tx *tx = s->tx;

		next = s->wait_next;
		s->state = S_CMD;
		if (rc < 0 || tx->unmirrored) {
			/* not durable (here, or on the mirror peer): never
			 * acknowledged; try not to deliver it either (the
			 * client will retry) */
			spool_message_delete(backmxd.spool, tx->id);
			stats.refused_spool++;
			if (rc >= 0)
				smtpd_reply(s, "451 4.3.0 Error: the mirror "
				               "node did not confirm its copy, "
				               "try again later");
			else if (spool_errno(backmxd.spool) == SPOOL_ENOSPC)
				smtpd_reply(s, "452 4.3.1 Error: insufficient "
				               "system storage");
			else
				smtpd_reply(s, "451 4.3.0 Error: local error "
				               "in processing");
		} else {
			smtpd_reply(s, "250 2.0.0 Ok: queued as %s", tx->id);
			stats.accepted++;
			stats.accepted_bytes += tx->size;
			log_msg(tx->id, "client=unknown[%s]", s->addr);
			log_msg(tx->id, "message-id=<%s>", tx->hs.message_id);
			log_svc("qmgr", LOG_INFO, tx->id,
			        "from=<%s>, size=%llu, "
			        "nrcpt=%d (queue active)",
			        tx->sender, (unsigned long long)tx->size,
			        tx->nrcpt);
			forward_queued(&tx->env);
		}
		smtpd_tx_reset(s);
		if (s->close_after_flush && s->outlen == 0 && s->inlen == 0) {
			/* the client went away while we synced */
			s->close_after_flush = 0;
			smtpd_flush(s);
			s->dead = 1;
			smtpd_done(s);
			continue;
		}
		s->processing = 1;
		smtpd_process(s); /* commands pipelined behind the data */
		s->processing = 0;
		smtpd_flush(s);
		if (smtpd_done(s))
			continue;
		if ((s->state == S_CMD || s->state == S_DATA ||
		     s->state == S_BDAT) &&
		    !s->close_after_flush)
			ev_io_start(backmxd.loop, &s->rio);
	}
}

/* commit_done - a log flush that returned ret: the sessions get their
 * verdicts */
static void
commit_done(struct smtpd_session *list, int ret)
{
	int rc = spool_sync_done(backmxd.spool, ret);

	if (rc < 0)
		log_err("spool sync: %s", spool_error(backmxd.spool));
	commit_verdicts(list, rc);
}

/* commit_now - the waiting sessions' flush on the loop */
static void
commit_now(void)
{
	struct smtpd_session *list = commit_take();

	if (list != NULL)
		commit_done(list, spool_log_flush(backmxd.spool));
}

static void *
commit_main(void *arg)
{
	int ret;

	pthread_mutex_lock(&cm.mu);
	for (;;) {
		while (!cm.asked && !cm.stop)
			pthread_cond_wait(&cm.work, &cm.mu);
		if (!cm.asked)
			break;
		cm.asked = 0;
		pthread_mutex_unlock(&cm.mu);
		ret = spool_log_flush(backmxd.spool);
		pthread_mutex_lock(&cm.mu);
		cm.ret = ret;
		cm.done = 1;
		pthread_cond_signal(&cm.done_cv);
		ev_async_send(backmxd.loop, &commit_async);
	}
	pthread_mutex_unlock(&cm.mu);
	return arg;
}

/* commit_thread - the committer running (started at the first group,
 * so that a process forked before never inherits it); -1: it cannot be
 * started, the flush stays on the loop */
static int
commit_thread(void)
{
	sigset_t all, old;
	int err;

	if (cm.started)
		return 0;
	/* signals stay the loop's (libev's handlers) */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&cm.tid, NULL, commit_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err != 0) {
		log_warn("group commit: no committer thread (%s): the log "
		         "flush runs on the event loop",
		         strerror(err));
		return -1;
	}
	cm.started = 1;
	return 0;
}

/* commit_landed - the thread's flush returned (cm.done): its group's
 * verdicts */
static void
commit_landed(int ret)
{
	struct smtpd_session *list = flight;

	flight = NULL;
	flying = 0;
	commit_done(list, ret);
}

static void
commit_async_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	int ret;

	pthread_mutex_lock(&cm.mu);
	if (!cm.done) {
		pthread_mutex_unlock(&cm.mu);
		return;
	}
	cm.done = 0;
	ret = cm.ret;
	pthread_mutex_unlock(&cm.mu);
	commit_landed(ret);
}

static void
commit_prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	if (wait_head == NULL || flying)
		return; /* the next group waits for the one on the disk */
	if (!spool_threaded(backmxd.spool) || commit_thread() < 0) {
		commit_now();
		return;
	}
	flight = commit_take();
	flying = 1;
	pthread_mutex_lock(&cm.mu);
	cm.asked = 1;
	pthread_cond_signal(&cm.work);
	pthread_mutex_unlock(&cm.mu);
}

/* commit_idle_cb - one loop turn without blocking, so that the prepare
 * watcher runs again for commits made inside the previous one */
static void
commit_idle_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	ev_idle_stop(loop, w);
}

void
smtpd_commit_init(void)
{
	ev_prepare_init(&commit_prepare, commit_prepare_cb);
	ev_idle_init(&commit_idle, commit_idle_cb);
	ev_async_init(&commit_async, commit_async_cb);
	ev_prepare_start(backmxd.loop, &commit_prepare);
	ev_async_start(backmxd.loop, &commit_async);
}

void
smtpd_commit_step(void)
{
	if (!flying)
		commit_now();
}

void
smtpd_commit_drain(void)
{
	if (flying) {
		int ret;

		pthread_mutex_lock(&cm.mu);
		while (!cm.done)
			pthread_cond_wait(&cm.done_cv, &cm.mu);
		cm.done = 0;
		ret = cm.ret;
		pthread_mutex_unlock(&cm.mu);
		commit_landed(ret);
	}
	commit_now(); /* the group that was filling */
	if (cm.started) {
		pthread_mutex_lock(&cm.mu);
		cm.stop = 1;
		pthread_cond_signal(&cm.work);
		pthread_mutex_unlock(&cm.mu);
		pthread_join(cm.tid, NULL);
		cm.started = 0;
		cm.stop = 0;
	}
	ev_prepare_stop(backmxd.loop, &commit_prepare);
	ev_async_stop(backmxd.loop, &commit_async);
}
