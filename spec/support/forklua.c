/*
 * forklua -- a Lua interpreter with fork(), for spec/reliability_spec.lua.
 *
 *   cc forklua.c $(pkg-config --cflags --libs lua5.4) -o forklua
 *   LUA_CPATH=... forklua script.lua [args...]
 *
 * Lua has no fork() and luaposix is not in every Lua's packages, so the spec
 * compiles this against the Lua it runs under (5.1 to 5.4, LuaJIT). The
 * script gets `arg` and a table `proc`:
 *   proc.fork()      -> 0 in the child, the child's pid in the parent
 *   proc.wait(pid)   -> the child's exit status (128 + signal when killed)
 *   proc.getpid()    -> this process's pid
 * When the script returns (in either process) the Lua state is closed, so
 * every __gc runs -- in a forked child too, as in a real pre-fork server --
 * then the process exits 0 (1 when the script raised).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"

static int l_fork(lua_State *L) {
  pid_t pid;
  fflush(NULL);
  pid = fork();
  if (pid < 0) return luaL_error(L, "fork failed");
  lua_pushinteger(L, (lua_Integer)pid);
  return 1;
}

static int l_wait(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  int status = 0;
  if (waitpid(pid, &status, 0) < 0) return luaL_error(L, "waitpid failed");
  lua_pushinteger(L, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0));
  return 1;
}

static int l_getpid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

int main(int argc, char **argv) {
  lua_State *L;
  int i, rc;
  if (argc < 2) {
    fprintf(stderr, "usage: %s script.lua [args...]\n", argv[0]);
    return 2;
  }
  L = luaL_newstate();
  if (L == NULL) return 2;
  luaL_openlibs(L);
  lua_newtable(L);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - 1);
  }
  lua_setglobal(L, "arg");
  lua_newtable(L);
  lua_pushcfunction(L, l_fork);
  lua_setfield(L, -2, "fork");
  lua_pushcfunction(L, l_wait);
  lua_setfield(L, -2, "wait");
  lua_pushcfunction(L, l_getpid);
  lua_setfield(L, -2, "getpid");
  lua_setglobal(L, "proc");
  rc = luaL_dofile(L, argv[1]);
  if (rc != 0) fprintf(stderr, "forklua[%ld]: %s\n", (long)getpid(), lua_tostring(L, -1));
  lua_close(L);
  return rc != 0;
}
