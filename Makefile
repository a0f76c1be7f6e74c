# limpet — build, run, test.
#
#   make            build build/limpet
#   make run        build, then start the demo (SPEC §1)
#   make test       unit tests (cmocka, ASan+UBSan), end-to-end tests (pytest), then
#                   each fuzz target briefly (make fuzz FUZZ_SECONDS=N runs them longer)
#   make test-tomcat  limpet in front of two Debian tomcat10 nodes (jvmRoute) and a JSP
#                   session counter (tests/tomcat; installs tomcat10; not part of make test)
#   make bench      limpet against HAProxy, nginx and a floor relay (wrk; bench/README.md),
#                   then the affinity token micro-benchmark
#   make install    programs, man pages and the systemd unit under $(DESTDIR)$(PREFIX)
#                   (PREFIX=/usr/local by default); make uninstall removes them
#
# Missing Debian packages are installed by the `deps` step (apt-get, when root).

CC      ?= cc
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c17 -D_GNU_SOURCE -Wall -Wextra -Werror -Isrc -MMD -MP
LDLIBS  := -ljansson -lssl -lcrypto -luring -lpthread -lm
PYTHON  := /usr/bin/python3

BUILD   := build
SRCS    := $(shell find src -name '*.c' | sort)
LIBSRCS := $(filter-out src/main.c,$(SRCS))
OBJS    := $(SRCS:%.c=$(BUILD)/obj/%.o)
LIBOBJS := $(LIBSRCS:%.c=$(BUILD)/obj/%.o)

SAN        := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
UNIT_SRCS  := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS  := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/unit/%)
SAN_OBJS   := $(LIBSRCS:%.c=$(BUILD)/san/%.o)
# The end-to-end suite runs against these: the real binaries under
# AddressSanitizer + UndefinedBehaviorSanitizer (any report fails the test).
SAN_LIMPET    := $(BUILD)/san/limpet
SAN_LIMPETCTL := $(BUILD)/san/limpetctl

DEB_PACKAGES := gcc make clang libclang-rt-dev libjansson-dev libssl-dev liburing-dev libcmocka-dev \
                python3-pytest curl wrk chromium nodejs man-db groff-base systemd
# The dashboard's browser test drives Debian's chromium with playwright-core (npm).
BROWSER_DEPS := tests/browser/node_modules/.package-lock.json
DEPS_STAMP   := $(BUILD)/.deps-ok
# Only `make bench` needs these: the peers limpet is compared with, and the load generator.
BENCH_PACKAGES := haproxy nginx-light wrk curl
BENCH_STAMP    := $(BUILD)/.bench-deps-ok

# make install: where things go. The unit's ExecStart names $(SBINDIR)/limpet.
PREFIX  ?= /usr/local
DESTDIR ?=
SBINDIR := $(PREFIX)/sbin
BINDIR  := $(PREFIX)/bin
MANDIR  := $(PREFIX)/share/man
UNITDIR := $(PREFIX)/lib/systemd/system
MAN8    := man/limpet.8 man/limpetctl.8
MAN5    := man/limpet.json.5

.PHONY: all run test layers unit e2e test-tomcat bench deps clean install uninstall
.SECONDARY:
.DEFAULT_GOAL := all

CTL_SRC := $(wildcard tools/limpetctl.c)
CTL_BIN := $(if $(CTL_SRC),$(BUILD)/limpetctl)

all: $(BUILD)/limpet $(CTL_BIN)

# install_missing(PACKAGES[,APT_FLAGS]): installs the Debian packages that are
# missing (apt-get, when root), or prints the one command to run; then touches
# the stamp.
define install_missing
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(2) $$missing || exit 1; \
	  else \
	    echo "missing Debian packages; run:  sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi
	@mkdir -p $(BUILD) && touch $@
endef

# Installs what is missing, once; prints the one command to run when not root.
$(DEPS_STAMP): Makefile
	$(call install_missing,$(DEB_PACKAGES))

deps: $(DEPS_STAMP)

$(BUILD)/limpet: $(OBJS)
	@echo "  LD      $@"
	@$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/limpetctl: $(BUILD)/obj/tools/limpetctl.o $(LIBOBJS)
	@echo "  LD      $@"
	@$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(SAN_LIMPET): $(BUILD)/san/src/main.o $(SAN_OBJS)
	@echo "  LD+SAN  $@"
	@$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(LDLIBS)

$(SAN_LIMPETCTL): $(BUILD)/san/tools/limpetctl.o $(SAN_OBJS)
	@echo "  LD+SAN  $@"
	@$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(LDLIBS)

# Files embedded with .incbin (the dashboard) are dependencies of their object.
ASSETS := $(wildcard src/admin/*.html src/admin/*.js src/admin/*.css)
$(BUILD)/obj/src/admin/assets.o $(BUILD)/san/src/admin/assets.o: $(ASSETS)

$(BUILD)/obj/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/san/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@echo "  CC+SAN  $<"
	@$(CC) $(CFLAGS) $(SAN) -c -o $@ $<

$(BUILD)/unit/%: tests/unit/%.c $(SAN_OBJS)
	@mkdir -p $(dir $@)
	@echo "  TEST    $@"
	@$(CC) $(CFLAGS) $(SAN) -o $@ $< $(SAN_OBJS) $(LDLIBS) -lcmocka

run: $(BUILD)/limpet
	$(BUILD)/limpet --demo

test: layers unit e2e fuzz-smoke

# A source file may include only headers of its own layer or those below it
# (core ← http ← snapshot ← balance ← affinity ← proxy; see tools/check_layers.py).
layers:
	@$(PYTHON) tools/check_layers.py src

unit: $(UNIT_BINS)
	@$(PYTHON) tests/unit/run_all.py $(UNIT_BINS)

$(BROWSER_DEPS): tests/browser/package.json tests/browser/package-lock.json | $(DEPS_STAMP)
	cd tests/browser && npm ci --no-audit --no-fund

# Any sanitizer report (a memory error, undefined behaviour, or a leak when
# limpet exits) lands on the process's stderr, which the suite checks.
E2E_ENV := LIMPET_BIN=$(CURDIR)/$(SAN_LIMPET) LIMPETCTL_BIN=$(CURDIR)/$(SAN_LIMPETCTL) \
           ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1

e2e: all $(SAN_LIMPET) $(SAN_LIMPETCTL) $(BROWSER_DEPS)
	$(E2E_ENV) $(PYTHON) -m pytest -q tests/e2e

# Tomcat for make test-tomcat (Jasper compiles the JSP with eclipse-jdt-core, a dependency).
TOMCAT_STAMP := $(BUILD)/.tomcat-deps-ok
$(TOMCAT_STAMP):
	$(call install_missing,tomcat10,--no-install-recommends)

test-tomcat: $(SAN_LIMPET) $(TOMCAT_STAMP)
	$(E2E_ENV) $(PYTHON) -m pytest -q tests/tomcat

# The bench's own packages, likewise.
$(BENCH_STAMP):
	$(call install_missing,$(BENCH_PACKAGES))

bench: $(BUILD)/limpet $(BUILD)/floor_relay $(BUILD)/tls_load $(BUILD)/affinity_bench $(BENCH_STAMP)
	bench/run.sh
	$(BUILD)/affinity_bench

# The bench's reference relay: plain C, no project code.
$(BUILD)/floor_relay: bench/floor_relay.c
	@mkdir -p $(BUILD)
	$(CC) -O2 -g -std=c17 -D_GNU_SOURCE -Wall -Wextra -Werror -o $@ $<

# The bench's TLS connection generator (full and resumed handshakes): plain C + OpenSSL.
$(BUILD)/tls_load: bench/tls_load.c
	@mkdir -p $(BUILD)
	$(CC) -O2 -g -std=c17 -D_GNU_SOURCE -Wall -Wextra -Werror -o $@ $< -lssl -lcrypto

$(BUILD)/affinity_bench: bench/affinity_bench.c src/affinity/token.c src/affinity/token.h
	$(CC) $(CFLAGS) -o $@ bench/affinity_bench.c src/affinity/token.c -lcrypto

clean:
	rm -rf $(BUILD)

install: $(BUILD)/limpet $(BUILD)/limpetctl
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man8 \
	           $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(UNITDIR)
	install -m 755 $(BUILD)/limpet $(DESTDIR)$(SBINDIR)/limpet
	install -m 755 $(BUILD)/limpetctl $(DESTDIR)$(BINDIR)/limpetctl
	install -m 644 $(MAN8) $(DESTDIR)$(MANDIR)/man8/
	install -m 644 $(MAN5) $(DESTDIR)$(MANDIR)/man5/
	sed 's|@SBINDIR@|$(SBINDIR)|g' dist/limpet.service.in > $(DESTDIR)$(UNITDIR)/limpet.service
	chmod 644 $(DESTDIR)$(UNITDIR)/limpet.service

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/limpet $(DESTDIR)$(BINDIR)/limpetctl \
	      $(addprefix $(DESTDIR)$(MANDIR)/man8/,$(notdir $(MAN8))) \
	      $(addprefix $(DESTDIR)$(MANDIR)/man5/,$(notdir $(MAN5))) \
	      $(DESTDIR)$(UNITDIR)/limpet.service

-include fuzz/fuzz.mk
-include $(OBJS:.o=.d) $(SAN_OBJS:.o=.d) $(UNIT_BINS:=.d)
