# telnyx-sim: build, test, demo.
#   make                  build/lua5.4/telnyx/sim.so
#   make LUA=5.1|5.2|5.3|5.4|luajit
#   make test             the busted suite under $(LUA)
#   make demo             the examples against the stub server (or the real API with TELNYX_API_KEY)
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

DEB_PACKAGES = lua5.4 liblua5.4-dev lua-cjson lua-busted lua-socket libcurl4-openssl-dev luarocks pkg-config

.PHONY: all test demo deps clean lint lint-c rock-check

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

lint:
	luacheck .

# Static analysis of the module: both must report nothing.
lint-c:
	cppcheck --enable=warning,style,performance,portability --inline-suppr --error-exitcode=1 -q \
	  --suppress=missingIncludeSystem --suppress=toomanyconfigs lua_telnyx_sim.c
	clang-tidy --quiet lua_telnyx_sim.c -- -std=c99 $(LUA_INC) $(CURL_CFLAGS) -I/usr/include/$(shell gcc -print-multiarch)

rock-check:
	luarocks lint telnyx-sim-*-1.rockspec

clean:
	rm -rf build
