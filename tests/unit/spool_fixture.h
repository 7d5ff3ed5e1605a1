/*
 * spool_fixture.h - the spool environment the unit tests share: small
 * BDB sizes (an environment per test), a fresh directory
 * /tmp/backmx-test-TAG-XXXXXX/spool per test (spool_open creates the
 * last part), its removal, and an open that fails the test with the
 * spool's own message.  Users: test_spool.c, test_spool_next.c,
 * test_verify_cache.c, test_forwarder.c.
 *
 * Include it after cmocka.h and spool.h, with SPOOL_FIXTURE_TAG defined
 * ("spool", "next", ...).  Everything is static inline: a test file uses
 * what it needs.
 */
#ifndef BACKMX_SPOOL_FIXTURE_H
#define BACKMX_SPOOL_FIXTURE_H

#include <sys/mount.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef SPOOL_FIXTURE_TAG
#error "define SPOOL_FIXTURE_TAG before including spool_fixture.h"
#endif

/* small sizes: many environments are created */
static const struct spool_options fixture_opts = {
    .cache_bytes = 4 << 20, .log_buffer = 1 << 20, .log_file = 4 << 20};
/* the spool directory of the running test */
static char dir[256];

/* fixture_mkdir - a new directory for the test; dir names its spool */
static inline void
fixture_mkdir(void)
{
	snprintf(dir, sizeof(dir),
	         "/tmp/backmx-test-" SPOOL_FIXTURE_TAG "-XXXXXX");
	assert_non_null(mkdtemp(dir));
	strcat(dir, "/spool"); /* spool_open creates it */
}

/* fixture_rmdir - remove the test's directory; a failed disk-full test of
 * test_spool.c leaves a tmpfs mounted at dir.tmpfs (elsewhere there is
 * none and the umount fails harmlessly) */
static inline int
fixture_rmdir(void)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "%s.tmpfs", dir);
	umount2(cmd, MNT_DETACH);
	*strrchr(dir, '/') = '\0';
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* setup_dir, teardown_dir - the same as cmocka setup/teardown */
static inline int
setup_dir(void **state)
{
	fixture_mkdir();
	return 0;
}

static inline int
teardown_dir(void **state)
{
	return fixture_rmdir();
}

/* open_spool - the spool at dir, or the test fails with the reason */
static inline struct spool *
open_spool(void)
{
	char err[1024];
	struct spool *s =
	    spool_open_opts(dir, &fixture_opts, NULL, err, sizeof(err));

	if (s == NULL)
		fail_msg("spool_open %s: %s", dir, err);
	return s;
}

#endif
