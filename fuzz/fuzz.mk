# fuzz.mk — libFuzzer targets (included by the top Makefile; also usable
# alone: make -f fuzz/fuzz.mk fuzz).
#
#   make fuzz                  build every target, run each FUZZ_SECONDS (60) s
#   make fuzz FUZZ_SECONDS=N   the same for N seconds each
#   make fuzz-smoke            every target for 10 s (part of `make test`)
#   make fuzz-build            build only
#   make fuzz-run-request      one target (request, response, chunked, config,
#                              cookie, token, proxy_protocol, tls)
#
# Each target is built with clang -fsanitize=fuzzer,address,undefined (every
# sanitizer report aborts) into build/fuzz/fuzz_NAME, linked with only the
# sources it tests. A run works on a copy of fuzz/corpus/NAME/ under
# build/fuzz/work/ (so the committed seeds never grow), with the dictionary
# given below; it fails on any crash, leak, timeout or sanitizer report,
# printing the end of the log and the saved input
# (build/fuzz/artifacts/NAME-crash-...; replay: build/fuzz/fuzz_NAME FILE).
# The closing table gives the executions of every target.
#
# Needs clang and its runtime (Debian: clang libclang-rt-dev).

BUILD        ?= build
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_DIR     := $(BUILD)/fuzz
FUZZ_CFLAGS  := -std=c17 -D_GNU_SOURCE -Isrc -g -O1 -fno-omit-frame-pointer \
                -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
                -Wall -Wextra -Werror

FUZZ_TARGETS := request response chunked config cookie token proxy_protocol tls

# What each target links and how it runs.
FUZZ_SRCS_request  := src/http/h1.c
FUZZ_SRCS_response := src/http/h1.c
FUZZ_SRCS_chunked  := src/http/h1.c
FUZZ_SRCS_config   := src/config/config.c src/snapshot/settings.c src/core/addr.c
FUZZ_SRCS_cookie   := src/http/cookie.c
FUZZ_SRCS_token    := src/affinity/token.c
FUZZ_SRCS_proxy_protocol := src/http/proxy_protocol.c
FUZZ_SRCS_tls      := src/core/tls.c src/core/loop.c src/core/uring.c src/core/slab.c \
                      src/core/buffer.c
FUZZ_HDRS_request  := src/http/h1.h
FUZZ_HDRS_response := src/http/h1.h
FUZZ_HDRS_chunked  := src/http/h1.h
FUZZ_HDRS_config   := src/config/config.h src/snapshot/settings.h src/core/addr.h
FUZZ_HDRS_cookie   := src/http/cookie.h
FUZZ_HDRS_token    := src/affinity/token.h
FUZZ_HDRS_proxy_protocol := src/http/proxy_protocol.h
FUZZ_HDRS_tls      := src/core/tls.h src/core/transport.h src/core/loop.h src/core/uring.h src/core/stats.h \
                      fuzz/tls_fixture.h
FUZZ_LIBS_config   := -ljansson
FUZZ_LIBS_token    := -lcrypto
FUZZ_LIBS_tls      := -lssl -lcrypto -luring
FUZZ_OPTS_request  := -dict=fuzz/http.dict -max_len=12288
FUZZ_OPTS_response := -dict=fuzz/http.dict -max_len=8192
FUZZ_OPTS_chunked  := -dict=fuzz/http.dict -max_len=8192
FUZZ_OPTS_config   := -dict=fuzz/config.dict -max_len=16384
FUZZ_OPTS_cookie   := -dict=fuzz/http.dict -max_len=4096
FUZZ_OPTS_token    := -dict=fuzz/token.dict -max_len=1024
FUZZ_OPTS_proxy_protocol := -dict=fuzz/proxy_protocol.dict -max_len=1024
FUZZ_OPTS_tls      := -max_len=8192
FUZZ_COMMON_OPTS   := -timeout=10 -rss_limit_mb=2048 -print_final_stats=1

FUZZ_BINS := $(FUZZ_TARGETS:%=$(FUZZ_DIR)/fuzz_%)

.PHONY: fuzz fuzz-smoke fuzz-build $(FUZZ_TARGETS:%=fuzz-run-%)

fuzz-build: $(FUZZ_BINS)

define FUZZ_RULES
$(FUZZ_DIR)/fuzz_$(1): fuzz/fuzz_$(1).c fuzz/fuzz_common.h $(FUZZ_SRCS_$(1)) \
                       $(FUZZ_HDRS_$(1)) | $(DEPS_STAMP)
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $$@ fuzz/fuzz_$(1).c $(FUZZ_SRCS_$(1)) $(FUZZ_LIBS_$(1))

fuzz-run-$(1): $(FUZZ_DIR)/fuzz_$(1)
	@rm -rf $(FUZZ_DIR)/work/$(1) && mkdir -p $(FUZZ_DIR)/work/$(1) $(FUZZ_DIR)/artifacts
	@cp -R fuzz/corpus/$(1)/. $(FUZZ_DIR)/work/$(1)/
	@echo "fuzz: $(1): $$(FUZZ_SECONDS) s on a copy of fuzz/corpus/$(1) ($$$$(ls fuzz/corpus/$(1) | wc -l) seeds)"
	@$(FUZZ_DIR)/fuzz_$(1) $(FUZZ_OPTS_$(1)) $(FUZZ_COMMON_OPTS) -max_total_time=$$(FUZZ_SECONDS) \
	    -artifact_prefix=$(FUZZ_DIR)/artifacts/$(1)- $(FUZZ_DIR)/work/$(1) \
	    > $(FUZZ_DIR)/work/$(1).log 2>&1 \
	  || { tail -n 60 $(FUZZ_DIR)/work/$(1).log; \
	       echo "fuzz: $(1): FAILED (log: $(FUZZ_DIR)/work/$(1).log; replay: $(FUZZ_DIR)/fuzz_$(1) $(FUZZ_DIR)/artifacts/$(1)-*)"; \
	       exit 1; }
endef
$(foreach t,$(FUZZ_TARGETS),$(eval $(call FUZZ_RULES,$(t))))

# Executions per target, from the logs of the runs just made.
define FUZZ_SUMMARY
	@echo "fuzz: $(words $(FUZZ_TARGETS)) targets clean, $(FUZZ_SECONDS) s each; executions:"
	@for t in $(FUZZ_TARGETS); do \
	  n=$$(sed -n 's/^stat::number_of_executed_units: *//p' $(FUZZ_DIR)/work/$$t.log | tail -n 1); \
	  c=$$(ls $(FUZZ_DIR)/work/$$t | wc -l); \
	  printf '  %-14s %12s executions  corpus %s\n' "$$t" "$${n:-?}" "$$c"; \
	done
endef

fuzz: $(FUZZ_TARGETS:%=fuzz-run-%)
	$(FUZZ_SUMMARY)

fuzz-smoke: FUZZ_SECONDS = 10
fuzz-smoke: $(FUZZ_TARGETS:%=fuzz-run-%)
	$(FUZZ_SUMMARY)
