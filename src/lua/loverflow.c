/* The overflow policies' names at the Lua boundary (core/overflow.h states
 * them once): msrt.core.overflow_names and the one parser of a policy
 * argument. Any thread that owns L. */
#include <lauxlib.h>

#include "core/overflow.h"
#include "lua/lrt.h"

msrt_overflow msrt_lua_overflow(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return MSRT_OVERFLOW_DEFAULT;
  return (msrt_overflow)luaL_checkoption(L, idx, NULL, msrt_overflow_names);
}

void msrt_lua_open_overflow(lua_State *L) {
  lua_newtable(L); /* in core/overflow.h's order */
  for (int i = 0; msrt_overflow_names[i]; i++) {
    lua_pushstring(L, msrt_overflow_names[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "overflow_names");
}
