#include "lua/lfield.h"

#include <lauxlib.h>

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

bool msrt_lua_field_bool(lua_State *L, int t, const char *k) {
  lua_getfield(L, abs_index(L, t), k);
  bool b = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return b;
}

lua_Number msrt_lua_field_size(lua_State *L, int t, const char *k) {
  lua_Number v = msrt_lua_field_num(L, t, k, 0);
  return v > 0 ? v : 0;
}

const char **msrt_lua_field_strs(lua_State *L, int t, const char *k,
                                 size_t *n) {
  lua_getfield(L, abs_index(L, t), k);
  *n = lua_istable(L, -1) ? lua_objlen(L, -1) : 0;
  const char **v = lua_newuserdata(L, (*n + 1) * sizeof *v);
  for (size_t i = 0; i < *n; i++) {
    lua_rawgeti(L, -2, (int)i + 1);
    v[i] = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    lua_pop(L, 1);
    if (!v[i]) luaL_error(L, "%s[%d] must be a string", k, (int)i + 1);
  }
  v[*n] = NULL;
  lua_remove(L, -2); /* the list: anchored in t */
  return v;
}
