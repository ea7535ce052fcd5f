#include "lua/lfield.h"

/* t as an absolute index (LuaJIT has no lua_absindex). */
static int abs_index(lua_State *L, int t) {
  return t < 0 && t > LUA_REGISTRYINDEX ? lua_gettop(L) + t + 1 : t;
}

lua_Number msrt_lua_field_num(lua_State *L, int t, const char *k,
                              lua_Number d) {
  lua_getfield(L, abs_index(L, t), k);
  lua_Number v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : d;
  lua_pop(L, 1);
  return v;
}

const char *msrt_lua_field_str(lua_State *L, int t, const char *k) {
  lua_getfield(L, abs_index(L, t), k);
  const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  lua_pop(L, 1);
  return s;
}

int msrt_lua_field_bool(lua_State *L, int t, const char *k) {
  lua_getfield(L, abs_index(L, t), k);
  int b = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return b;
}
