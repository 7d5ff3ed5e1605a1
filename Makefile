# backmx - backup-MX store-and-forward SMTP relay
#
#   make            build build/backmxd and build/backmxctl
#   make run        install missing build deps, build, run the demo in the foreground
#   make check      install missing build+test deps, build, unit + integration + fuzz smoke
#   make install    PREFIX=/usr/local DESTDIR=
#   make lint       clang-format check and cppcheck over every C file
#   make fuzz       run every fuzz target for FUZZ_SECONDS each
#   make fuzz-long  every fuzz target for FUZZ_TIME (1800) s at nice 19
#   make bench      benchmark beside Postfix (tests/bench/); BENCH_ARGS=--scale: scale runs
#   make clean

VERSION   := 0.1.0
PREFIX    ?= /usr/local
DESTDIR   ?=
BUILD     ?= build
CC        ?= cc
FUZZ_SECONDS ?= 60
SMOKE_SECONDS ?= 5

PKGS      := libunbound libssl libcrypto libsystemd
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN      := -Wall -Wextra -Werror -Wno-unused-parameter
BASEFLAGS := -std=gnu11 -D_GNU_SOURCE -DBACKMX_VERSION=\"$(VERSION)\" \
	     -Ipolicy -Ispool -Irelay
CFLAGS    ?= -O2 -g
ALL_CFLAGS = $(BASEFLAGS) $(WARN) $(CFLAGS) $(PKG_CFLAGS)
# libunbound runs on our libev loop (relay/ub_ev.c, unbound-event.h):
# no libevent in the process, no link-order constraint.
LIBS       = $(PKG_LIBS) -lev -ldb-5.3 -lm
LIBS      += -lldap -llber	# ldap: recipient source (relay/ldap_src.c)

POLICY_SRC := $(wildcard policy/*.c)
SPOOL_SRC  := $(wildcard spool/*.c)
RELAY_SRC  := $(wildcard relay/*.c)
# sources only the CLI uses, and what the CLI shares with the daemon
CTL_MAIN   := relay/backmxctl.c
CTL_SHARED := $(filter $(wildcard relay/config.c relay/log.c relay/util.c relay/json.c),$(RELAY_SRC))
DAEMON_MAIN := relay/main.c
RELAY_LIB_SRC := $(filter-out $(CTL_MAIN) $(DAEMON_MAIN),$(RELAY_SRC))
LIB_SRC    := $(POLICY_SRC) $(SPOOL_SRC) $(RELAY_LIB_SRC)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
asanobj = $(patsubst %.c,$(BUILD)/asan/%.o,$(1))
fuzzobj = $(patsubst %.c,$(BUILD)/fuzzobj/%.o,$(1))

.PHONY: lint
.PHONY: all run check install clean fuzz fuzz-smoke bench deps deps-test deps-bench unit integration \
	check-asan man summary

all: $(BUILD)/backmxd $(BUILD)/backmxctl

# every object lists the headers it includes in its .d file (-MMD -MP),
# so a header change rebuilds only what includes it
DEPFLAGS  := -MMD -MP

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(DEPFLAGS) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/libbackmx.a: $(call obj,$(LIB_SRC))
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/backmxd: $(call obj,$(DAEMON_MAIN)) $(BUILD)/libbackmx.a
	$(CC) $(CFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/backmxctl: $(call obj,$(CTL_MAIN)) $(BUILD)/libbackmx.a
	$(CC) $(CFLAGS) -o $@ $^ $(LIBS)

# ---------------------------------------------------------------- deps
# `make`, `make run`, `make install`: build libraries only.  `make check`:
# also the test tools (Postfix's smtp-source/smtp-sink unpacked into
# $(BUILD)/postfix-tools, never installed).  `make bench`: also a system
# Postfix, and only where no other MTA is installed.  Nothing is removed.
deps:
	@sh contrib/install-deps build $(BUILD)

deps-test:
	@sh contrib/install-deps test $(BUILD)

deps-bench:
	@sh contrib/install-deps bench $(BUILD)

# ---------------------------------------------------------------- run
run: deps all
	@mkdir -p run/spool
	@echo "backmx demo: SMTP on 127.0.0.1:2525, domain demo.example, spool in ./run/"
	@echo "try:  swaks --server 127.0.0.1:2525 --to alice@demo.example"
	$(BUILD)/backmxd -f -c contrib/demo.conf

# ---------------------------------------------------------------- tests
# -fno-sanitize-recover: every ASan and UBSan report ends the process
ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
	      -fno-sanitize-recover
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BIN   := $(patsubst tests/unit/%.c,$(BUILD)/unit/%,$(UNIT_SRC))

$(BUILD)/asan/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(DEPFLAGS) $(BASEFLAGS) $(WARN) $(ASAN_FLAGS) $(PKG_CFLAGS) -c -o $@ $<

$(BUILD)/libbackmx-asan.a: $(call asanobj,$(LIB_SRC))
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/unit/%: tests/unit/%.c $(BUILD)/libbackmx-asan.a
	@mkdir -p $(dir $@)
	@rm -f $@
	$(CC) $(DEPFLAGS) $(BASEFLAGS) $(WARN) $(ASAN_FLAGS) $(PKG_CFLAGS) \
		$$(pkg-config --cflags cmocka) -o $@ $< $(BUILD)/libbackmx-asan.a \
		$$(pkg-config --libs cmocka) $(LIBS)

# the daemon built with ASan+UBSan for `make check-asan`
$(BUILD)/asan/backmxd: $(call asanobj,$(DAEMON_MAIN)) $(BUILD)/libbackmx-asan.a
	$(CC) $(ASAN_FLAGS) -o $@ $^ $(LIBS)

# a test binary that does not build is a FAIL line of its runner ("not
# built"), not a silent gap in the results
unit:
	@$(MAKE) --no-print-directory -k $(UNIT_BIN) || true
	@sh tests/unit/run.sh $(BUILD) $(UNIT_BIN)

integration: all
	@sh tests/integration/run.sh $(BUILD)

FUZZ_SRC  := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN  := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))
FUZZ_FLAGS := -O1 -g -DBACKMX_FUZZ -fsanitize=fuzzer-no-link,address,undefined \
	      -fno-sanitize-recover=undefined

$(BUILD)/fuzzobj/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(DEPFLAGS) $(BASEFLAGS) -Wall -Wno-unused-parameter $(FUZZ_FLAGS) $(PKG_CFLAGS) -c -o $@ $<

$(BUILD)/libbackmx-fuzz.a: $(call fuzzobj,$(LIB_SRC))
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/fuzz/%: tests/fuzz/%.c $(BUILD)/libbackmx-fuzz.a
	@mkdir -p $(dir $@)
	@rm -f $@
	clang $(DEPFLAGS) $(BASEFLAGS) -O1 -g -fsanitize=fuzzer,address,undefined $(PKG_CFLAGS) \
		-o $@ $< $(BUILD)/libbackmx-fuzz.a $(LIBS)

lint:
	@sh tests/lint.sh $(BUILD)

fuzz-smoke:
	@$(MAKE) --no-print-directory -k $(FUZZ_BIN) || true
	@sh tests/fuzz/run.sh $(BUILD) $(SMOKE_SECONDS) $(FUZZ_BIN)

fuzz:
	@$(MAKE) --no-print-directory -k $(FUZZ_BIN) || true
	@sh tests/fuzz/run.sh $(BUILD) $(FUZZ_SECONDS) $(FUZZ_BIN)

# every target for FUZZ_TIME seconds, one after another at nice 19 (the
# cores are shared); FUZZ_TARGETS="smtp_cmd proxy" narrows it.  Figures
# go in tests/fuzz/RESULTS.md.
FUZZ_TIME ?= 1800
.PHONY: fuzz-long
fuzz-long:
	@$(MAKE) --no-print-directory -k $(FUZZ_BIN) || true
	@FUZZ_NICE="nice -n 19" FUZZ_DICT=1 sh tests/fuzz/run.sh $(BUILD) $(FUZZ_TIME) \
		$(if $(FUZZ_TARGETS),$(patsubst %,$(BUILD)/fuzz/fuzz_%,$(FUZZ_TARGETS)),$(FUZZ_BIN))

# make check: everything, then one summary line.  Each runner appends
# "PASS name" / "FAIL name: reason" lines to $(BUILD)/results.  The daemon
# is built on every core, then the integration shards (mostly waiting on
# sockets and timers) run beside the unit and fuzz builds and runs.
JOBS      ?= $(shell nproc 2>/dev/null || echo 2)
check: deps-test
	@rm -f $(BUILD)/results
	@$(MAKE) --no-print-directory -j$(JOBS) all
	@$(MAKE) --no-print-directory -j$$(($(JOBS) + 1)) -k unit integration fuzz-smoke lint || true
	@sh tests/summary.sh $(BUILD)/results

# the integration suite against the ASan+UBSan daemon; the runner fails a
# test whose daemon logged a sanitizer report (leaks show at SIGTERM, as
# exit status 23).  CHECK_ASAN_ARGS="-k PATTERN" narrows it.
check-asan: deps-test $(BUILD)/asan/backmxd all
	@rm -f $(BUILD)/results
	@ASAN_OPTIONS=$${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=1} \
	 UBSAN_OPTIONS=$${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
	 LSAN_OPTIONS=$${LSAN_OPTIONS:-print_suppressions=0} \
	 BACKMXD=$(abspath $(BUILD))/asan/backmxd \
	 sh tests/integration/run.sh $(BUILD) $(CHECK_ASAN_ARGS) || true
	@sh tests/summary.sh $(BUILD)/results

# the long crash-consistency run (kill -9 during accept, delivery,
# checkpoint and flush); TORTURE_SECONDS=600 by default, TORTURE_SEED repeats
.PHONY: torture
torture: deps-test all
	@TORTURE_SECONDS=$${TORTURE_SECONDS:-600} sh tests/torture.sh $(BUILD)

bench: deps-bench all
	@bash tests/bench/run.sh $(BUILD) $(BENCH_ARGS)

# the header dependencies the compilers wrote (none before the first build)
-include $(wildcard $(BUILD)/obj/*/*.d $(BUILD)/asan/*/*.d \
	$(BUILD)/fuzzobj/*/*.d $(BUILD)/unit/*.d $(BUILD)/fuzz/*.d)

# ---------------------------------------------------------------- install
# make install PREFIX=/usr/local DESTDIR=: binaries, man pages, the systemd
# unit (from contrib/backmx.service.in, paths following PREFIX), sysusers.d
# and tmpfiles.d snippets, the example configuration (never overwriting
# an existing $(SYSCONFDIR)/backmx/backmx.conf).  The Debian package
# (debian/rules) runs it with PREFIX=/usr.
SBINDIR        ?= $(PREFIX)/sbin
MANDIR         ?= $(PREFIX)/share/man
DOCDIR         ?= $(PREFIX)/share/doc/backmx
SYSCONFDIR     ?= /etc
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR    ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR    ?= $(PREFIX)/lib/tmpfiles.d

# written on every install: the paths are those of this make's PREFIX
$(BUILD)/backmx.service: contrib/backmx.service.in Makefile FORCE
	@mkdir -p $(dir $@)
	sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' $< > $@.tmp
	mv $@.tmp $@

install: all $(BUILD)/backmx.service
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(SYSTEMDUNITDIR) \
		$(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) \
		$(DESTDIR)$(DOCDIR) $(DESTDIR)$(SYSCONFDIR)/backmx
	install -m 0755 $(BUILD)/backmxd $(BUILD)/backmxctl $(DESTDIR)$(SBINDIR)/
	install -m 0644 man/backmxd.8 man/backmxctl.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 man/backmx.conf.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 $(BUILD)/backmx.service $(DESTDIR)$(SYSTEMDUNITDIR)/backmx.service
	install -m 0644 contrib/backmx.sysusers $(DESTDIR)$(SYSUSERSDIR)/backmx.conf
	install -m 0644 contrib/backmx.tmpfiles $(DESTDIR)$(TMPFILESDIR)/backmx.conf
	install -m 0644 contrib/backmx.conf.example $(DESTDIR)$(DOCDIR)/backmx.conf.example
	test -e $(DESTDIR)$(SYSCONFDIR)/backmx/backmx.conf || \
		install -m 0644 contrib/backmx.conf.package $(DESTDIR)$(SYSCONFDIR)/backmx/backmx.conf
	test -e $(DESTDIR)$(SYSCONFDIR)/backmx/unconfigured.rcpts || \
		install -m 0644 /dev/null $(DESTDIR)$(SYSCONFDIR)/backmx/unconfigured.rcpts

clean:
	rm -rf $(BUILD) run

.PHONY: FORCE
FORCE:
