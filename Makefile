# telnyx-sim: build, test, demo.
#   make                  build/lua5.4/telnyx/sim.so
#   make LUA=5.1|5.2|5.3|5.4|luajit
#   make test             the busted suite under $(LUA)
#   make test-all         the busted suite under 5.4, 5.1, 5.2, 5.3 and luajit, each against its own build
#   make demo             the examples against the stub server (or the real API with TELNYX_API_KEY)
#   make demo-openresty   examples/openresty/ in Debian's nginx + lua module, against the stub server
#   make bench [CHECK=1]  module vs bare libcurl + cjson vs the Node SDK (bench/); CHECK=1: targets set the exit status
#   make deps             install the Debian packages this needs (as root), or say which

LUA ?= 5.4
CC ?= cc
CFLAGS ?= -O2 -g
WARN = -std=c99 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wconversion -Wno-sign-conversion
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
TEST_ENV = LUA_CPATH='$(CURDIR)/$(BUILD)/?.so;;' LUA_PATH='$(CURDIR)/?.lua;$(CURDIR)/?/init.lua;;'

DEB_PACKAGES = lua5.4 liblua5.4-dev lua-cjson lua-busted lua-socket libcurl4-openssl-dev luarocks pkg-config \
  nginx libnginx-mod-http-lua libluajit2-5.1-dev ca-certificates
# make test-all: the other Luas (luajit2 is OpenResty's LuaJIT, the one nginx's lua module uses)
ALL_LUA_PACKAGES = lua5.1 liblua5.1-0-dev lua5.2 liblua5.2-dev lua5.3 liblua5.3-dev luajit2 libluajit2-5.1-dev
TEST_ALL_LUAS = 5.4 5.1 5.2 5.3 luajit

.PHONY: all test test-all demo demo-openresty deps clean lint lint-c rock-check

all: $(MODULE)

$(MODULE): lua_telnyx_sim.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WARN) -fPIC -shared $(LUA_INC) $(CURL_CFLAGS) $< -o $@ $(CURL_LIBS) -lpthread -lm

deps:
	@sh .ci/deps.sh $(DEB_PACKAGES)

test: deps $(MODULE)
	$(TEST_ENV) LUA_BIN=$(LUA_BIN) $(BUSTED) spec

demo: deps $(MODULE)
	@$(TEST_ENV) LUA_BIN=$(LUA_BIN) sh examples/run-demo.sh

# One `make test` per Lua, each printing busted's own summary line; the first
# is the README's `make test`. Runs them all, fails if any failed.
test-all:
	@sh .ci/deps.sh $(DEB_PACKAGES) $(ALL_LUA_PACKAGES)
	@status=0; for v in $(TEST_ALL_LUAS); do \
	  echo "== make test LUA=$$v"; $(MAKE) --no-print-directory test LUA=$$v || status=1; \
	done; exit $$status

# nginx runs LuaJIT: it loads build/luajit/telnyx/sim.so.
demo-openresty: deps
	@$(MAKE) --no-print-directory LUA=luajit
	@LUA_PATH='$(CURDIR)/?.lua;;' lua5.4 examples/openresty/run-demo.lua

lint:
	luacheck .

# Static analysis of the module: both must report nothing.
lint-c:
	cppcheck --enable=warning,style,performance,portability --inline-suppr --error-exitcode=1 -q \
	  --suppress=missingIncludeSystem --suppress=toomanyconfigs lua_telnyx_sim.c
	clang-tidy --quiet lua_telnyx_sim.c -- -std=c99 $(LUA_INC) $(CURL_CFLAGS) -I/usr/include/$(shell gcc -print-multiarch)

rock-check:
	luarocks lint telnyx-sim-*-1.rockspec

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
	@$(MAKE) --no-print-directory LUA=5.4 all
	@LUA_CPATH='$(CURDIR)/build/lua5.4/?.so;;' BENCH_LIMIT=$(BENCH_LIMIT) BENCH_CHECK=$(CHECK) sh bench/run.sh

clean:
	rm -rf build
