/* Embedding LuaJIT in a fuzz target (fuzz_profile.c, fuzz_luaroutes.c):
 * a fresh state per input whose runaway code is cut off rather than
 * reported, and Lua line coverage that libFuzzer can see.
 *
 * - memory: the allocator refuses more than 64 MiB (LuaJIT then raises
 *   "not enough memory"); it is malloc underneath, so ASan sees every Lua
 *   object, including the userdata C code writes into;
 * - time: the JIT is off so a count hook sees every loop; after ~1 M VM
 *   instructions every hook raises BUDGET_MARK;
 * - coverage: LuaJIT itself is not instrumented, so each line run in a
 *   file under lua/ bumps one of libFuzzer's extra counters.
 * A driver's error that carries one of those two markers is not a finding;
 * any other is, and aborts (so libFuzzer saves the input).
 */
#ifndef MSRT_SPEC_FUZZ_LUA_H
#define MSRT_SPEC_FUZZ_LUA_H

#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>

#include "fuzz.h"

#if !defined(MSRT_SOURCE_LUA_DIR) || !defined(MSRT_FUZZ_DIR)
#error "MSRT_SOURCE_LUA_DIR (lua/) and MSRT_FUZZ_DIR (spec/fuzz/) come from CMakeLists.txt"
#endif

#define MEM_LIMIT ((size_t)64 << 20)
#define HOOK_EVERY 1000
#define HOOK_BUDGET 1000
#define BUDGET_MARK "fuzz: instruction budget spent"

static size_t mem_used;
static int hooks;

static void *limited_alloc(void *ud, void *p, size_t old, size_t n) {
  (void)ud;
  if (n == 0) {
    free(p);
    mem_used -= old;
    return NULL;
  }
  if (n > old && mem_used + (n - old) > MEM_LIMIT) return NULL;
  void *q = realloc(p, n);
  if (q) mem_used = mem_used - (p ? old : 0) + n;
  return q;
}

/* Lua line coverage (see the top of this file). */
#define LUA_COUNTERS 4096
__attribute__((used, section("__libfuzzer_extra_counters")))
static uint8_t lua_lines[LUA_COUNTERS];

static void line_hit(lua_State *L, lua_Debug *ar) {
  static const char dir[] = "@" MSRT_SOURCE_LUA_DIR "/";
  if (!lua_getinfo(L, "S", ar) || strncmp(ar->source, dir, sizeof dir - 1) != 0)
    return;
  uint32_t h = 2166136261u; /* FNV-1a of the file name, then the line */
  for (const char *p = ar->source + sizeof dir - 1; *p; p++)
    h = (h ^ (uint8_t)*p) * 16777619u;
  h = (h ^ (uint32_t)ar->currentline) * 16777619u;
  uint8_t *c = &lua_lines[h % LUA_COUNTERS];
  if (*c < 255) (*c)++;
}

static void budget_hook(lua_State *L, lua_Debug *ar) {
  if (ar->event == LUA_HOOKLINE) {
    line_hit(L, ar);
    return;
  }
  if (++hooks > HOOK_BUDGET) luaL_error(L, BUDGET_MARK);
}

/* A fresh state with the standard libraries and the JIT off. */
static lua_State *fz_lua_new(void) {
  mem_used = 0;
  lua_State *L = lua_newstate(limited_alloc, NULL);
  FUZZ_ASSERT(L);
  luaL_openlibs(L);
  luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
  return L;
}

/* Close L; every byte it allocated must be back. */
static void fz_lua_close(lua_State *L) {
  lua_close(L);
  FUZZ_ASSERT(mem_used == 0);
}

/* Push the driver file as a function, and the repo's lua/ dir as its first
 * argument. */
static void fz_lua_load(lua_State *L, const char *file) {
  if (luaL_loadfile(L, file)) {
    fprintf(stderr, "driver: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_pushstring(L, MSRT_SOURCE_LUA_DIR);
}

/* Call the driver with the lua/ dir and nargs more arguments under the
 * budget; abort on any error but the budget's. */
static void fz_lua_run(lua_State *L, int nargs, const char *what) {
  hooks = 0;
  lua_sethook(L, budget_hook, LUA_MASKCOUNT | LUA_MASKLINE, HOOK_EVERY);
  if (lua_pcall(L, nargs + 1, 0, 0) == 0) return;
  const char *msg = lua_tostring(L, -1);
  if (msg && (strstr(msg, BUDGET_MARK) || strstr(msg, "not enough memory")))
    return;
  fprintf(stderr, "%s finding: %s\n", what, msg ? msg : "(non-string error)");
  abort();
}

#endif
