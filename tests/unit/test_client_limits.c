/*
 * test_client_limits.c - relay/client_limits.c: client_limit counts
 * concurrent sessions per address (IPv6 per /64, IPv4-mapped as IPv4),
 * another address is unaffected, client_rate refuses over N per window
 * and forgets after it, dnsbl_allow is exempt, and a flood of distinct
 * addresses keeps the table at LIMITS_IDLE_MAX idle entries.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include "backmxd.h"
#include "client_limits.h"

struct backmxd backmxd;
struct stats stats;

static struct config *
load(const char *text)
{
	char path[] = "/tmp/test_client_limits.XXXXXX", diag[2048];
	/* a config needs a domain block (config.c refuses none) */
	static const char dom[] = "domain a.example { recipients * }\n";
	int fd = mkstemp(path), nerr;
	struct config *c;

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(write(fd, dom, strlen(dom)), (ssize_t)strlen(dom));
	close(fd);
	c = config_load(path, diag, sizeof(diag), &nerr);
	unlink(path);
	if (c == NULL)
		fail_msg("config: %s", diag);
	return c;
}

static struct sockaddr_storage
addr(const char *s)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(s, ':') != NULL) {
		ss.ss_family = AF_INET6;
		inet_pton(AF_INET6, s,
		          &((struct sockaddr_in6 *)&ss)->sin6_addr);
	} else {
		ss.ss_family = AF_INET;
		inet_pton(AF_INET, s, &((struct sockaddr_in *)&ss)->sin_addr);
	}
	return ss;
}

static void
test_client_limit(void **state)
{
	struct sockaddr_storage a = addr("192.0.2.1"), b = addr("192.0.2.2");
	struct sockaddr_storage m = addr("::ffff:192.0.2.1");
	struct sockaddr_storage v6a = addr("2001:db8:1:2::1");
	struct sockaddr_storage v6b = addr("2001:db8:1:2:ffff::9");
	struct sockaddr_storage v6c = addr("2001:db8:1:3::1");
	struct sockaddr_storage ok = addr("198.51.100.4");

	backmxd.cfg = load("client_limit 3\ndnsbl_allow 198.51.100.0/24\n");
	for (int i = 0; i < 3; i++)
		assert_int_equal(client_limits_open(&a, 1), LIMITS_OK);
	assert_int_equal(client_limits_open(&a, 1), LIMITS_CONCURRENT);
	assert_int_equal(client_limits_open(&m, 1), LIMITS_CONCURRENT);
	assert_int_equal(client_limits_open(&b, 1), LIMITS_OK);
	client_limits_close(&a);
	assert_int_equal(client_limits_open(&a, 1), LIMITS_OK);
	/* one /64 */
	assert_int_equal(client_limits_open(&v6a, 1), LIMITS_OK);
	assert_int_equal(client_limits_open(&v6b, 1), LIMITS_OK);
	assert_int_equal(client_limits_open(&v6a, 1), LIMITS_OK);
	assert_int_equal(client_limits_open(&v6b, 1), LIMITS_CONCURRENT);
	assert_int_equal(client_limits_open(&v6c, 1), LIMITS_OK);
	/* exempt up to max_clients_per_ip (default 50) */
	for (int i = 0; i < 50; i++)
		assert_int_equal(client_limits_open(&ok, 1), LIMITS_OK);
	assert_int_equal(client_limits_open(&ok, 1), LIMITS_PER_IP);
	for (int i = 0; i < 50; i++)
		client_limits_close(&ok);
	for (int i = 0; i < 3; i++) {
		client_limits_close(&a);
		client_limits_close(&v6a);
	}
	client_limits_close(&b);
	client_limits_close(&v6b);
	client_limits_close(&v6c);
	/* no rate: nothing is kept once the sessions are gone */
	assert_int_equal(client_limits_entries(), 0);
	config_free(backmxd.cfg);
}

static void
test_client_rate(void **state)
{
	struct sockaddr_storage a = addr("192.0.2.1"), b = addr("192.0.2.2");

	backmxd.cfg = load("client_rate 5/m\n");
	for (int i = 0; i < 5; i++) {
		assert_int_equal(client_limits_open(&a, 100), LIMITS_OK);
		client_limits_close(&a);
	}
	assert_int_equal(client_limits_open(&a, 110), LIMITS_RATE);
	assert_int_equal(client_limits_open(&b, 110), LIMITS_OK);
	client_limits_close(&b);
	assert_int_equal(client_limits_open(&a, 161), LIMITS_OK);
	client_limits_close(&a);
	config_free(backmxd.cfg);
}

static void
test_client_flood(void **state)
{
	backmxd.cfg = load("client_rate 5/m\nclient_limit 20\n");
	for (unsigned i = 0; i < 3 * LIMITS_IDLE_MAX; i++) {
		struct sockaddr_storage ss;

		memset(&ss, 0, sizeof(ss));
		ss.ss_family = AF_INET;
		((struct sockaddr_in *)&ss)->sin_addr.s_addr =
		    htonl(0x0a000000 + i);
		assert_int_equal(client_limits_open(&ss, 200), LIMITS_OK);
		client_limits_close(&ss);
		assert_true(client_limits_entries() <= LIMITS_IDLE_MAX);
	}
	assert_int_equal(client_limits_entries(), LIMITS_IDLE_MAX);
	config_free(backmxd.cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_client_limit),
	    cmocka_unit_test(test_client_rate),
	    cmocka_unit_test(test_client_flood),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
