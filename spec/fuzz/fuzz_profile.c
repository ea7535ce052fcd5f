/* Fuzz target "profile": the tuning-profile loader (lua/msrt/profile.lua),
 * run in an embedded LuaJIT as msrt-lua loads it: the module comes from
 * the repo's lua/ dir through package.path, and the checks are Lua, in
 * spec/fuzz/profile_driver.lua. Only `msrt.core` is a stand-in: its
 * `error` checks its arguments as src/lua/lerror.c does (a known code
 * name and a string message, or it raises); the policy files' own
 * functions (src/lua/lpolicy.h, lsys.h: reading, the policy state) are
 * the real ones, handed to the driver as the global msrt_core_c, with the
 * overflow policies' names from core/overflow.h (the schema's enum).
 *
 * Input: byte 0 picks the mode, the rest is
 *   mode even: the text of a profile file, loaded by M.load_file (syntax
 *              errors, runtime errors, a function of the machine, any
 *              return value);
 *   mode odd:  a recipe for a table (keys from the schema or made up,
 *              values at and past the schema's bounds, nested tables),
 *              given to M.validate with the input itself as the "source".
 *
 * Invariants:
 *   - neither raises: load_file returns a table (which then validates) or
 *     nil and an error whose code is `syntax` or `bad_profile`; validate
 *     returns true, or nil and a `bad_profile` error whose message is
 *     "file:line: problem" and whose `problems` list starts with the
 *     message; validate accepts exactly the tables the schema describes;
 *   - the policy file cannot reach outside its sandbox: the string, table,
 *     math and os libraries hold the same values afterwards.
 * Runaway files are cut off, not reported (spec/fuzz/fuzz_lua.h: a fresh
 * state per input, a VM instruction budget, 64 MiB of memory).
 */
#include <unistd.h>

#include "fuzz_lua.h"
#include "lua/lpolicy.h"
#include "lua/lrt.h"
#include "lua/lsys.h"

/* Run the driver on one input; abort on a finding. */
static void run(lua_State *L, int mode, const char *path, const uint8_t *p,
                size_t n) {
  fz_lua_load(L, MSRT_FUZZ_DIR "/profile_driver.lua");
  lua_pushinteger(L, mode);
  lua_pushstring(L, path);
  lua_pushlstring(L, (const char *)p, n);
  fz_lua_run(L, 3, "profile");
}

static void write_file(const char *path, const uint8_t *p, size_t n) {
  FILE *f = fopen(path, "wb");
  FUZZ_ASSERT(f);
  FUZZ_ASSERT(fwrite(p, 1, n, f) == n);
  FUZZ_ASSERT(fclose(f) == 0);
}

/* The file a mode-0 input is written to, for load_file to read. */
static char path[64];

static void remove_file(void) { unlink(path); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!path[0]) {
    snprintf(path, sizeof path, "/tmp/msrt-fuzz-profile-%d.lua", (int)getpid());
    atexit(remove_file);
  }
  fz_in in = {data, size};
  int mode = fz_u8(&in) & 1;
  if (mode == 0) write_file(path, in.p, in.n);
  lua_State *L = fz_lua_new();
  lua_newtable(L);
  msrt_lua_open_sys(L);
  msrt_lua_open_policy(L);
  msrt_lua_open_overflow(L); /* overflow_names, as msrt.core has them */
  lua_setglobal(L, "msrt_core_c");
  run(L, mode, path, in.p, in.n);
  fz_lua_close(L);
  return 0;
}
