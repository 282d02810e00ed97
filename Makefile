# telnyx-sim: build, test, demo.
#   make                  build/lua5.4/telnyx/sim.so
#   make LUA=5.1|5.2|5.3|5.4|luajit
#   make test             the busted suite under $(LUA)
#   make test-all         the busted suite under 5.4, 5.1, 5.2, 5.3 and luajit, each against its own build,
#                         then under 5.4 again with OpenResty's lua-cjson fork (CJSON=fork)
#   make test CJSON=fork  the suite (nginx's too) with the fork built from ../shared/vendor, not Debian's 2.1.0
#   make demo             the examples against the fake Telnyx (or the real API with TELNYX_API_KEY)
#   make example-test     examples/test_with_fake/: a fleet script's busted spec against the fake (docs/fake.md)
#   make demo-openresty   examples/openresty/ in Debian's nginx + lua module, against the stub server
#   make bench [CHECK=1]  module vs bare libcurl + cjson vs the Node SDK (bench/); CHECK=1: targets set the exit status
#   make deps             install the Debian packages this needs (as root), or say which
#   make memcheck         the suite (Lua 5.4, module at -O1 -g) under valgrind memcheck, #soak and #nginx excluded
#   make asan             the suite against an ASan + UBSan build of the module (clang-14), #soak and #nginx excluded
#   make fuzz             the libFuzzer targets (fuzz/), FUZZ_SECONDS each (default 600); fuzz-ci: 30 s each
#   make generate         types/telnyx/sim.lua (LuaLS definitions) and README.md's operations table, from the module
#   make contract         every operation, valid calls only, through Prism mocking the OpenAPI document (contract/)

LUA ?= 5.4
CC ?= cc
CFLAGS ?= -O2 -g
# Rows (src/operations.h) name only the fields they set; the rest are zero by design.
WARN = -std=c99 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wconversion -Wno-sign-conversion \
  -Wno-missing-field-initializers
CURL_CFLAGS := $(shell pkg-config --cflags libcurl 2>/dev/null)
CURL_LIBS := $(shell pkg-config --libs libcurl 2>/dev/null || echo -lcurl)

ifeq ($(LUA),luajit)
  LUA_TAG = luajit
  LUA_BIN = luajit
  LUA_INC = $(shell pkg-config --cflags luajit 2>/dev/null || echo -I/usr/include/luajit-2.1)
else
  LUA_TAG = lua$(LUA)
  LUA_BIN = lua$(LUA)
  LUA_INC = $(shell pkg-config --cflags lua$(LUA) 2>/dev/null || echo -I/usr/include/lua$(LUA))
endif

BUILD = build/$(LUA_TAG)
MODULE = $(BUILD)/telnyx/sim.so
BUSTED = busted --lua=$(LUA_BIN)

# CJSON=fork: the specs load OpenResty's lua-cjson fork (what LuaRocks and OpenResty install), built
# from the vendored copy, instead of the installed one (Debian's 2.1.0); nginx's LuaJIT loads it too.
CJSON ?= installed
VENDOR_DIR ?= $(or $(TELNYX_SIM_VENDOR_DIR),$(abspath $(CURDIR)/../shared/vendor))
CJSON_FORK_SRC = $(VENDOR_DIR)/lua-cjson-2.1.0.17
FORK_DIR = build/cjson-fork
ifeq ($(CJSON),fork)
  FORK_BUILDS = $(FORK_DIR)/$(LUA_TAG)/cjson.so $(FORK_DIR)/luajit/cjson.so
  TEST_CPATH = $(CURDIR)/$(FORK_DIR)/$(LUA_TAG)/?.so;
  FORK_ENV = TELNYX_SIM_CJSON=fork TELNYX_SIM_CJSON_CPATH='$(CURDIR)/$(FORK_DIR)/luajit/?.so;'
endif
TEST_ENV = LUA_CPATH='$(TEST_CPATH)$(CURDIR)/$(BUILD)/?.so;;' LUA_PATH='$(CURDIR)/?.lua;$(CURDIR)/?/init.lua;;' $(FORK_ENV)

DEB_PACKAGES = lua5.4 liblua5.4-dev lua-cjson lua-busted lua-socket libcurl4-openssl-dev luarocks pkg-config \
  nginx libnginx-mod-http-lua libluajit2-5.1-dev ca-certificates openssl python3 python3-h2
# make test-all: the other Luas (luajit2 is OpenResty's LuaJIT, the one nginx's lua module uses)
ALL_LUA_PACKAGES = lua5.1 liblua5.1-0-dev lua5.2 liblua5.2-dev lua5.3 liblua5.3-dev luajit2 libluajit2-5.1-dev
TEST_ALL_LUAS = 5.4 5.1 5.2 5.3 luajit

.PHONY: all test test-all demo demo-openresty deps clean lint lint-c rock-check generate contract example-test

all: $(MODULE)

# The module: the binding, the no-I/O core and the libcurl transport.
CORE_SRC = src/rules.c src/formats.c src/operations.c src/interpret.c src/err.c src/json.c src/strbuf.c src/random.c src/config.c
SRC = lua_telnyx_sim.c src/call.c src/batch.c src/transport.c $(CORE_SRC)
HDR = $(wildcard src/*.h)

$(MODULE): $(SRC) $(HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WARN) -fPIC -shared $(LUA_INC) $(CURL_CFLAGS) $(SRC) -o $@ $(CURL_LIBS) -lpthread -lm

deps:
	@sh .ci/deps.sh $(DEB_PACKAGES)

# OpenResty's lua-cjson for one Lua (lua5.4, luajit, ...), as its README says to build it.
$(FORK_DIR)/%/cjson.so:
	@test -f $(CJSON_FORK_SRC)/lua_cjson.c || { echo "CJSON=fork needs $(CJSON_FORK_SRC) (set TELNYX_SIM_VENDOR_DIR)" >&2; exit 1; }
	@mkdir -p $(dir $@)
	$(CC) -O2 -fPIC -shared $$(pkg-config --cflags $* 2>/dev/null || echo -I/usr/include/$*) \
	  $(addprefix $(CJSON_FORK_SRC)/,lua_cjson.c strbuf.c fpconv.c) -o $@

# TEST_ARGS: extra busted arguments (test-all passes --exclude-tags=nginx after the first Lua).
# The example a user copies (examples/test_with_fake/) is part of the suite.
EXAMPLE_SPECS = examples/test_with_fake
test: deps $(MODULE) $(FORK_BUILDS)
	$(TEST_ENV) LUA_BIN=$(LUA_BIN) $(BUSTED) $(TEST_ARGS) spec $(EXAMPLE_SPECS)

example-test: deps $(MODULE)
	$(TEST_ENV) $(BUSTED) $(EXAMPLE_SPECS)

demo: deps $(MODULE)
	@$(TEST_ENV) LUA_BIN=$(LUA_BIN) sh examples/run-demo.sh

# One `make test` per Lua, each printing busted's own summary line; the first
# is the README's `make test` (every spec). The others skip the #nginx specs:
# those run the LuaJIT build inside nginx whichever Lua drives busted, so once
# is enough. Runs them all, fails if any failed.
test-all:
	@sh .ci/deps.sh $(DEB_PACKAGES) $(ALL_LUA_PACKAGES)
	@status=0; for v in $(TEST_ALL_LUAS); do \
	  echo "== make test LUA=$$v"; $(MAKE) --no-print-directory test LUA=$$v $$extra || status=1; \
	  extra="TEST_ARGS=--exclude-tags=nginx"; \
	done; \
	if [ -f $(CJSON_FORK_SRC)/lua_cjson.c ] || [ "$$CI" = true ]; then \
	  echo "== make test LUA=5.4 CJSON=fork"; $(MAKE) --no-print-directory test LUA=5.4 CJSON=fork || status=1; \
	else echo "== SKIPPED make test CJSON=fork: no $(CJSON_FORK_SRC) (set TELNYX_SIM_VENDOR_DIR)"; fi; \
	exit $$status

# nginx runs LuaJIT: it loads build/luajit/telnyx/sim.so. The calls go through cosockets:
# lua-resty-http and lua-resty-string from $TELNYX_SIM_VENDOR_DIR, else ../shared/vendor.
demo-openresty: deps
	@$(MAKE) --no-print-directory LUA=luajit
	@LUA_PATH='$(CURDIR)/?.lua;;' lua5.4 examples/openresty/run-demo.lua

lint:
	luacheck .

# Static analysis of the module: both must report nothing. (clang-tidy's
# "N warnings generated" counts the system headers' warnings it suppressed.)
lint-c:
	cppcheck --enable=warning,style,performance,portability --inline-suppr --error-exitcode=1 -q \
	  --suppress=missingIncludeSystem --suppress=toomanyconfigs $(SRC)
	@echo "clang-tidy $(SRC)"; out=$$(clang-tidy --quiet $(SRC) -- -std=c99 $(LUA_INC) $(CURL_CFLAGS) \
	  -I/usr/include/$(shell gcc -print-multiarch) 2>&1); rc=$$?; \
	  printf '%s\n' "$$out" | grep -v 'warnings generated\.$$' || true; exit $$rc

rock-check:
	luarocks lint telnyx-sim-*-1.rockspec

# The files written from the module's own operation table (tools/generate.lua): the LuaLS
# definition file and README.md's operations table. spec/generated_spec.lua fails when either is stale.
generate:
	@$(MAKE) --no-print-directory LUA=5.4 all
	LUA_CPATH='$(CURDIR)/build/lua5.4/?.so;;' LUA_PATH='$(CURDIR)/?.lua;;' lua5.4 tools/generate.lua

# make bench [CHECK=1]: the module vs bare libcurl + cjson (bench/limit.c) vs the official Node SDK,
# against an nginx stub on loopback (bench/run.sh). Never part of `make test`; CHECK=1 makes the
# targets decide the exit status. Always Lua 5.4.
.PHONY: bench
BENCH_LIMIT = build/bench/limit
LUA54_INC = $(shell pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4)
LUA54_LIBS = $(shell pkg-config --libs lua5.4 2>/dev/null || echo -llua5.4)

$(BENCH_LIMIT): bench/limit.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -std=c99 -Wall -Wextra $(LUA54_INC) $(CURL_CFLAGS) $< -o $@ $(LUA54_LIBS) $(CURL_LIBS)

bench: deps $(BENCH_LIMIT)
	@sh .ci/deps.sh valgrind strace
	@$(MAKE) --no-print-directory LUA=5.4 all
	@$(MAKE) --no-print-directory LUA=luajit all
	@LUA_CPATH='$(CURDIR)/build/lua5.4/?.so;;' BENCH_LIMIT=$(BENCH_LIMIT) BENCH_CHECK=$(CHECK) sh bench/run.sh

# make contract: each of the 45 operations, one valid call, through Prism (pinned in contract/package.json,
# npm ci into contract/node_modules) running `prism mock --errors` on the OpenAPI document ($TELNYX_OPENAPI,
# else ../shared/telnyx-openapi/sim-cards-full.json); every call must be accepted, and a few invalid ones
# refused (contract/run.sh, contract/run.lua). Always Lua 5.4.
contract: deps
	@$(MAKE) --no-print-directory LUA=5.4 all
	@LUA_CPATH='$(CURDIR)/build/lua5.4/?.so;;' sh contract/run.sh

# --- memory safety: valgrind, sanitizers, fuzzing. Always Lua 5.4. ---
# Each builds its own copy of the module under build/; the slow soak spec
# (#soak) is left to `make test`. clang-14 is Debian 12's clang.
.PHONY: memcheck asan fuzz fuzz-ci
SAN_CC = clang-14
SAN_LUA_INC = $(shell pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4)
SAN_ENV = LUA_PATH='$(CURDIR)/?.lua;$(CURDIR)/?/init.lua;;' LUA_BIN=lua5.4
# The #nginx specs run the module inside nginx (the LuaJIT build), not this build: they are left to make test.
SAN_BUSTED_ARGS = --exclude-tags=soak,nginx spec
MEMCHECK_DIR = build/memcheck-lua5.4
MEMCHECK_MODULE = $(MEMCHECK_DIR)/telnyx/sim.so
ASAN_DIR = build/asan-lua5.4
ASAN_MODULE = $(ASAN_DIR)/telnyx/sim.so
ASAN_RT = libclang_rt.asan-x86_64.so
SAN_FLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_SECONDS ?= 600
FUZZ_TARGETS = interpret request
FUZZ_BINS = $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)

$(MEMCHECK_MODULE): $(SRC) $(HDR)
	@mkdir -p $(dir $@)
	$(CC) -O1 -g -fno-omit-frame-pointer $(WARN) -fPIC -shared $(SAN_LUA_INC) $(CURL_CFLAGS) $(SRC) -o $@ \
	  $(CURL_LIBS) -lpthread -lm

# Fails on any memcheck error, or a definite leak with the module on its stack
# (spec/support/memcheck.sh; suppressions in spec/support/valgrind.supp).
memcheck:
	@sh .ci/deps.sh $(DEB_PACKAGES) valgrind
	@$(MAKE) --no-print-directory $(MEMCHECK_MODULE)
	$(SAN_ENV) LUA_CPATH='$(CURDIR)/$(MEMCHECK_DIR)/?.so;;' \
	  sh spec/support/memcheck.sh lua5.4 $(SAN_BUSTED_ARGS)

$(ASAN_MODULE): $(SRC) $(HDR)
	@mkdir -p $(dir $@)
	$(SAN_CC) $(SAN_FLAGS) -shared-libsan $(WARN) -fPIC -shared $(SAN_LUA_INC) $(CURL_CFLAGS) $(SRC) -o $@ \
	  -Wl,-rpath,$(dir $(shell $(SAN_CC) -print-file-name=$(ASAN_RT) 2>/dev/null)) $(CURL_LIBS) -lpthread -lm

# lua5.4 is not instrumented: the ASan runtime is preloaded, and reaches the
# processes busted starts (stub, luarocks, cc) too. Any report aborts the run.
# Leak detection is off: those child processes leak by design, and memcheck
# covers the module's leaks.
asan:
	@sh .ci/deps.sh $(DEB_PACKAGES) clang-14 libclang-rt-14-dev llvm-14
	@$(MAKE) --no-print-directory $(ASAN_MODULE)
	$(SAN_ENV) LUA_CPATH='$(CURDIR)/$(ASAN_DIR)/?.so;;' \
	  LD_PRELOAD=$$($(SAN_CC) -print-file-name=$(ASAN_RT)) \
	  ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:detect_leaks=0:detect_stack_use_after_return=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:abort_on_error=1 \
	  ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-14/bin/llvm-symbolizer \
	  lua5.4 $$(command -v busted) $(SAN_BUSTED_ARGS)

# The module compiled into each target, Lua 5.4 embedded, Debian's cjson.so loaded from package.cpath.
# The targets link the binding and the no-I/O core with a stand-in transport,
# and no libcurl: the core calls none of it.
FUZZ_SRC = lua_telnyx_sim.c src/call.c src/batch.c $(CORE_SRC) fuzz/no_transport.c
build/fuzz/fuzz_%: fuzz/fuzz_%.c fuzz/harness.h $(FUZZ_SRC) $(HDR)
	@mkdir -p $(dir $@)
	$(SAN_CC) $(SAN_FLAGS) -fsanitize=fuzzer -std=c99 -Wall -Wextra -Wno-missing-field-initializers \
	  $(SAN_LUA_INC) $(CURL_CFLAGS) \
	  $< $(FUZZ_SRC) -o $@ -llua5.4 -lpthread -lm -ldl

fuzz:
	@sh .ci/deps.sh $(DEB_PACKAGES) clang-14 libclang-rt-14-dev llvm-14
	@$(MAKE) --no-print-directory $(FUZZ_BINS)
	sh fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-ci:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=30

clean:
	rm -rf build
