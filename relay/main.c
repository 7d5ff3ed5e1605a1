/*
 * main.c - backmxd: options, configuration, privileges, signals, and the
 * one libev loop everything runs in.
 *
 * Start-up order: read the config; bind the SMTP listeners, the control
 * socket and the metrics port as root; drop to `user`; open (and recover)
 * the spool; with `workers N` > 1 fork the accept processes (worker.c);
 * start the resolver, forwarder and (one process) listeners; ev_run.
 * SIGHUP swaps in a new config (a broken one is refused and the old kept);
 * SIGTERM/SIGINT stop accepting, close sessions with 421, close the spool.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <ifaddrs.h>
#include <limits.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backmxd.h"
#include "config_check.h"
#include "control.h"
#include "dns.h"
#include "forward.h"
#include "listen.h"
#include "log.h"
#include "notify.h"
#include "peer.h"
#include "rcpt_verify.h"
#include "metrics.h"
#include "mirror.h"
#include "reload.h"
#include "smtpd.h"
#include "tls.h"
#include "worker.h"

#define DIAG_MAX (64 * 1024)
#define CHECKPOINT_EVERY 30.0 /* seconds */

struct backmxd backmxd;
struct stats stats;

static const char *main_config_path = "/etc/backmx/backmx.conf";
static ev_signal main_sighup, main_sigterm, main_sigint;
static ev_timer main_checkpoint;
static char *main_pidfile; /* as written at start; a reload may change cfg */

static void
main_usage(void)
{
	fprintf(stderr, "usage: backmxd [-f] [-t] [-V] [-d] [-c FILE]\n");
	exit(1);
}

/* main_own_addrs - the addresses we are known by, for the MX cut */
static void
main_own_addrs(const struct config *cfg)
{
	struct ifaddrs *ifa, *i;
	int wildcard = 0, n = 0;

	free(backmxd.own_addrs);
	backmxd.own_addrs =
	    calloc(cfg->nlisten + 64, sizeof(*backmxd.own_addrs));
	if (backmxd.own_addrs == NULL)
		fatal("out of memory");
	for (int k = 0; k < cfg->nlisten; k++) {
		const struct sockaddr_storage *ss = &cfg->listen[k].ss;

		if (ss->ss_family == AF_INET &&
		    ((const struct sockaddr_in *)ss)->sin_addr.s_addr ==
		        htonl(INADDR_ANY))
			wildcard = 1;
		else if (ss->ss_family == AF_INET6 &&
		         IN6_IS_ADDR_UNSPECIFIED(
		             &((const struct sockaddr_in6 *)ss)->sin6_addr))
			wildcard = 1;
		else
			backmxd.own_addrs[n++] = *ss;
	}
	if (wildcard && getifaddrs(&ifa) == 0) {
		for (i = ifa; i != NULL && n < cfg->nlisten + 64;
		     i = i->ifa_next) {
			if (i->ifa_addr == NULL)
				continue;
			if (i->ifa_addr->sa_family == AF_INET)
				memcpy(&backmxd.own_addrs[n++], i->ifa_addr,
				       sizeof(struct sockaddr_in));
			else if (i->ifa_addr->sa_family == AF_INET6)
				memcpy(&backmxd.own_addrs[n++], i->ifa_addr,
				       sizeof(struct sockaddr_in6));
		}
		freeifaddrs(ifa);
	}
	backmxd.nown_addrs = n;
}

static void
main_print_diag(const char *diag)
{
	if (diag[0] != '\0')
		fputs(diag, stderr);
}

static void
main_reload_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	char msg[512];

	reload_config(0, msg, sizeof(msg)); /* it logs */
	notify_status(NULL);                /* systemd: the queue size, now */
}

/* main_spool_log - BDB's own messages, at their priority */
static void
main_spool_log(int prio, const char *msg)
{
	if (prio == SPOOL_LOG_ERR)
		log_err("%s", msg);
	else
		log_info("%s", msg);
}

static void
main_stop_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	if (backmxd.stopping)
		return;
	backmxd.stopping = 1;
	log_info("stopping on signal %d", w->signum);
	notify_stopping();
	listener_stop();
	control_close();
	metrics_close();
	mirror_gate_flush(); /* replies waiting for the peer: 451 */
	smtpd_shutdown();
	worker_stop(); /* they close their sessions and exit */
	peer_shutdown();
	forward_shutdown();
	rcpt_verify_shutdown();
	ev_break(loop, EVBREAK_ALL);
}

static void
main_checkpoint_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	if (spool_checkpoint(backmxd.spool) < 0)
		log_warn("spool checkpoint: %s", spool_error(backmxd.spool));
}

/* main_prepare_dir - create dir (and parents) and give it to uid/gid */
static void
main_prepare_dir(const char *dir, uid_t uid, gid_t gid, mode_t mode)
{
	char buf[PATH_MAX];

	if (snprintf(buf, sizeof(buf), "%s", dir) >= (int)sizeof(buf))
		fatal("path too long: %s", dir);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			fatal("mkdir %s: %s", buf, strerror(errno));
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		fatal("mkdir %s: %s", buf, strerror(errno));
	if (uid != (uid_t)-1 && chown(buf, uid, gid) < 0)
		fatal("chown %s: %s", buf, strerror(errno));
}

static void
main_drop_privileges(const struct config *cfg, const struct passwd *pw)
{
	if (pw == NULL)
		return;
	if (setgroups(1, &pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
	    setuid(pw->pw_uid) < 0)
		fatal("cannot drop privileges to %s: %s", cfg->user,
		      strerror(errno));
	/* verify: getting root back must be impossible */
	if (pw->pw_uid != 0 && (setuid(0) == 0 || seteuid(0) == 0))
		fatal("privilege drop to %s did not stick", cfg->user);
	log_info("running as %s (uid %d)", cfg->user, (int)pw->pw_uid);
}

static void
main_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int
main(int argc, char **argv)
{
	int ch, test_only = 0, debug = 0, nerr = 0;
	char *diag, err[512];
	struct passwd *pw = NULL;
	struct config *cfg;
	int nworkers;

	while ((ch = getopt(argc, argv, "c:ftVdh")) != -1) {
		switch (ch) {
		case 'c':
			main_config_path = optarg;
			break;
		case 'f':
			backmxd.foreground = 1;
			break;
		case 't':
			test_only = 1;
			break;
		case 'V':
			printf("backmxd %s\n", BACKMX_VERSION);
			return 0;
		case 'd':
			debug = 1;
			break;
		default:
			main_usage();
		}
	}
	if (optind != argc)
		main_usage();

	if ((diag = malloc(DIAG_MAX)) == NULL)
		return 1;
	cfg = config_load(main_config_path, diag, DIAG_MAX, &nerr);
	if (test_only) {
		main_print_diag(diag);
		if (cfg == NULL) {
			free(diag);
			fprintf(stderr, "%s: %d error(s)\n", main_config_path,
			        nerr);
			return 1;
		}
		/* what the text alone cannot show: files, clock, `user` */
		diag[0] = '\0';
		nerr = config_check(cfg, diag, DIAG_MAX);
		main_print_diag(diag);
		free(diag);
		config_free(cfg);
		if (nerr > 0) {
			fprintf(stderr, "%s: %d error(s)\n", main_config_path,
			        nerr);
			return 1;
		}
		return 0;
	}
	log_open("backmxd", backmxd.foreground);
	log_set_debug(debug);
	if (cfg == NULL) {
		main_print_diag(diag);
		if (!backmxd.foreground)
			reload_log_diag(diag);
		free(diag);
		fprintf(stderr, "backmxd: %s: %d error(s), not starting\n",
		        main_config_path, nerr);
		return 1;
	}
	reload_log_diag(diag);
	/* refuse files others could read or change (see backmxd(8)) */
	diag[0] = '\0';
	nerr = config_check_modes(cfg, diag, DIAG_MAX);
	if (nerr > 0) {
		main_print_diag(diag);
		if (!backmxd.foreground)
			reload_log_diag(diag);
		free(diag);
		fprintf(stderr, "backmxd: %s: %d error(s), not starting\n",
		        main_config_path, nerr);
		config_free(cfg);
		return 1;
	}
	free(diag);
	backmxd.cfg = cfg;
	reload_set_path(main_config_path);

	if (geteuid() == 0) {
		if (cfg->user == NULL && !backmxd.foreground)
			fatal("refusing to run as root: set `user` in %s",
			      main_config_path);
		if (cfg->user != NULL && (pw = getpwnam(cfg->user)) == NULL)
			fatal("user %s: no such user", cfg->user);
	}

	signal(SIGPIPE, SIG_IGN);
	main_raise_nofile();
	backmxd.loop = ev_default_loop(EVFLAG_AUTO);
	if (backmxd.loop == NULL)
		fatal("cannot initialise libev");

	if (tls_server_init(cfg, err, sizeof(err)) < 0)
		fatal("%s", err);
	nworkers = worker_count(cfg);
	if (listener_open(cfg, nworkers, err, sizeof(err)) < 0)
		fatal("%s", err);
	main_prepare_dir(cfg->spool, pw ? pw->pw_uid : (uid_t)-1,
	                 pw ? pw->pw_gid : (gid_t)-1, 0700);
	{
		char cdir[PATH_MAX], *slash;

		snprintf(cdir, sizeof(cdir), "%s", cfg->control);
		if ((slash = strrchr(cdir, '/')) != NULL && slash != cdir) {
			*slash = '\0';
			main_prepare_dir(cdir, pw ? pw->pw_uid : (uid_t)-1,
			                 pw ? pw->pw_gid : (gid_t)-1, 0750);
		}
	}
	if (control_open(cfg, err, sizeof(err)) < 0)
		fatal("%s", err);
	if (peer_open(cfg, err, sizeof(err)) < 0)
		fatal("%s", err);
	if (cfg->metrics != NULL && metrics_open(cfg, err, sizeof(err)) < 0)
		fatal("%s", err);
	main_own_addrs(cfg);
	main_drop_privileges(cfg, pw);
	if (!backmxd.foreground) {
		/* detach before the spool is opened: DB_REGISTER and the spool
		 * lock must belong to the process that stays */
		if (daemon(0, 0) < 0)
			fatal("cannot detach: %s", strerror(errno));
		ev_loop_fork(backmxd.loop);
	}

	{
		struct spool_options so;

		memset(&so, 0, sizeof(so));
		so.cache_bytes = (size_t)cfg->spool_cache;
		mirror_spool_options(cfg, &so); /* peer: a replication master */
		spool_set_logger(main_spool_log);
		backmxd.spool =
		    spool_open_opts(cfg->spool, &so, NULL, err, sizeof(err));
		if (backmxd.spool == NULL)
			fatal("spool %s: %s", cfg->spool, err);
		if (spool_damage(backmxd.spool) != NULL)
			log_err("spool %s: %s; acknowledge with `backmxctl "
			        "ack-spool`",
			        cfg->spool, spool_damage(backmxd.spool));
	}
	if (nworkers > 1) {
		if (worker_start(nworkers, err, sizeof(err)) < 0)
			fatal("%s", err);
		listener_keep(-1); /* a copy nobody accepts on would get
		                      its share of the connections */
	}
	backmxd.sched = schedule_new();
	if (backmxd.sched == NULL)
		fatal("out of memory");
	backmxd.dns = dns_new(backmxd.loop, cfg->dns, cfg->dns_trust_anchor, 30,
	                      err, sizeof(err));
	if (backmxd.dns == NULL)
		fatal("resolver: %s", err);
	if (cfg->pidfile != NULL) {
		FILE *fp = fopen(cfg->pidfile, "w");

		if (fp != NULL) {
			fprintf(fp, "%d\n", (int)getpid());
			fclose(fp);
			/* a copy: cfg is freed some time after a SIGHUP */
			main_pidfile = strdup(cfg->pidfile);
		} else
			log_warn("pidfile %s: %s", cfg->pidfile,
			         strerror(errno));
	}

	if (forward_init() < 0)
		fatal("forwarder: cannot load the queue: %s",
		      spool_error(backmxd.spool));
	if (rcpt_verify_init(err, sizeof(err)) < 0)
		fatal("spool %s: %s", cfg->spool, err);
	rcpt_verify_configure(cfg);
	smtpd_init();
	if (mirror_init(cfg, err, sizeof(err)) < 0)
		fatal("%s", err);
	if (nworkers <= 1)
		listener_start(); /* else the workers accept */
	control_start();
	if (cfg->metrics != NULL)
		metrics_start();

	ev_signal_init(&main_sighup, main_reload_cb, SIGHUP);
	ev_signal_start(backmxd.loop, &main_sighup);
	ev_signal_init(&main_sigterm, main_stop_cb, SIGTERM);
	ev_signal_start(backmxd.loop, &main_sigterm);
	ev_signal_init(&main_sigint, main_stop_cb, SIGINT);
	ev_signal_start(backmxd.loop, &main_sigint);
	ev_timer_init(&main_checkpoint, main_checkpoint_cb, CHECKPOINT_EVERY,
	              CHECKPOINT_EVERY);
	ev_timer_start(backmxd.loop, &main_checkpoint);

	{
		uint64_t msgs, bytes;

		spool_count(backmxd.spool, &msgs, &bytes);
		log_info("backmxd %s started: hostname %s, %d domain(s), "
		         "%llu message(s) queued, %d process(es) accepting",
		         BACKMX_VERSION, cfg->hostname, cfg->policy->ndomains,
		         (unsigned long long)msgs, nworkers);
	}
	notify_ready(backmxd.loop); /* systemd Type=notify: banner is up */
	ev_run(backmxd.loop, 0);

	if (worker_running() > 0 && worker_wait() < 0) {
		/* a worker died inside the environment: recovery at the
		 * next start, so no clean close here */
		log_err("stopped: a worker ended abnormally; the spool is "
		        "recovered at the next start");
		_exit(1);
	}

	if (spool_sync(backmxd.spool) < 0)
		log_err("spool sync at exit: %s", spool_error(backmxd.spool));
	spool_checkpoint(backmxd.spool);
	mirror_shutdown();
	spool_close(backmxd.spool);
	dns_free(backmxd.dns);
	schedule_free(backmxd.sched);
	if (main_pidfile != NULL)
		unlink(main_pidfile);
	free(main_pidfile);
	reload_free_old();
	log_info("stopped");
	return 0;
}
