/* Fuzz target "luaroutes": routing tables given as Lua lists, read by the
 * binding msrt.routes uses (core.routes_compile in src/lua/lroutes.c) and
 * compiled by src/router/routes.c: the real msrt.core (src/lua linked in
 * as msrt-lua links it) in an embedded LuaJIT (spec/fuzz/fuzz_lua.h).
 *
 * Input: a recipe (spec/fuzz/luaroutes_driver.lua reads it) for a list of
 * rules: tables or not, fields of the right and wrong types, patterns and
 * templates good and bad, split lists, unknown keys, weights of any kind.
 *
 * Invariants (checked in the driver):
 *   - routes_compile never raises on a table, and gives a compiled table
 *     or nil and a `bad_config` error whose `rule` is a rule's position;
 *   - the list compiles exactly when each rule compiles alone, and a
 *     refusal names a rule that is refused alone;
 *   - it names the first such rule, as routes.c does, also when a later
 *     rule's fields are wrong (corpus/luaroutes/regress-first-bad-rule);
 *   - a field name with a NUL byte in it ("match\0x") is refused as
 *     unknown (corpus/luaroutes/regress-nul-key);
 *   - no crash with rules that are proxies (fields from __index, a fresh
 *     value on each read, a garbage collection in between): the binding
 *     reads rules raw (corpus/luaroutes/regress-proxy-split and
 *     regress-proxy-strings, once a heap overflow and a use-after-free).
 */
#include "fuzz_lua.h"

int luaopen_msrt_core(lua_State *L); /* src/lua/host.h */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int strict = -1;
  if (strict < 0)
    strict = getenv("MSRT_FUZZ_STRICT") && atoi(getenv("MSRT_FUZZ_STRICT"));
  lua_State *L = fz_lua_new();
  fz_lua_load(L, MSRT_FUZZ_DIR "/luaroutes_driver.lua");
  lua_pushcfunction(L, luaopen_msrt_core);
  lua_call(L, 0, 1);
  lua_pushboolean(L, strict);
  lua_pushlstring(L, (const char *)data, size);
  fz_lua_run(L, 3, "luaroutes");
  fz_lua_close(L);
  return 0;
}
