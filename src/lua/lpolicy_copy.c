/* Values crossing between a policy state and the host's (lpolicy.h
 * "Values cross between the states by copy"); lpolicy.c makes the states
 * and runs the calls. Hub thread only. */
#include <lauxlib.h>

#include "lua/lpolicy_int.h"

#define MAX_DEPTH 64

/* ---- host -> policy (runs inside P's protected call) ---------------- */

static int proxy_id(lua_State *H, int i) {
  lua_getupvalue(H, i, 2);
  int id = (int)lua_tointeger(H, -1);
  lua_pop(H, 1);
  return id;
}

/* Whether the function at i is a proxy into s. */
static int own_proxy(lua_State *H, int i, pstate *s) {
  if (lua_tocfunction(H, i) != msrt_lpolicy_proxy_call) return 0;
  lua_getupvalue(H, i, 1);
  int mine = lua_touserdata(H, -1) == (void *)s;
  lua_pop(H, 1);
  return mine;
}

/* Whether a table's key or value at i is copied in: plain values,
 * tables and proxies into s. */
static int crosses(lua_State *H, int i, pstate *s) {
  int t = lua_type(H, i);
  return t != LUA_TUSERDATA && t != LUA_TLIGHTUSERDATA && t != LUA_TTHREAD &&
         (t != LUA_TFUNCTION || own_proxy(H, i, s));
}

void msrt_lpolicy_copy_in(lua_State *H, int i, lua_State *P, pstate *s,
                          int depth) {
  i = i < 0 && i > LUA_REGISTRYINDEX ? lua_gettop(H) + i + 1 : i;
  if (depth > MAX_DEPTH) luaL_error(P, "value nested deeper than %d (or a cycle)", MAX_DEPTH);
  luaL_checkstack(P, 4, "policy value");
  if (!lua_checkstack(H, 4)) luaL_error(P, "value nested too deep");
  switch (lua_type(H, i)) {
  case LUA_TNIL: lua_pushnil(P); return;
  case LUA_TBOOLEAN: lua_pushboolean(P, lua_toboolean(H, i)); return;
  case LUA_TNUMBER: lua_pushnumber(P, lua_tonumber(H, i)); return;
  case LUA_TSTRING: {
    size_t n;
    const char *str = lua_tolstring(H, i, &n);
    lua_pushlstring(P, str, n);
    return;
  }
  case LUA_TTABLE:
    lua_newtable(P);
    lua_pushnil(H);
    while (lua_next(H, i)) {
      if (crosses(H, -2, s) && crosses(H, -1, s)) {
        msrt_lpolicy_copy_in(H, -2, P, s, depth + 1);
        msrt_lpolicy_copy_in(H, -1, P, s, depth + 1);
        lua_rawset(P, -3);
      }
      lua_pop(H, 1);
    }
    return;
  case LUA_TFUNCTION:
    if (own_proxy(H, i, s)) {
      lua_rawgeti(P, LUA_REGISTRYINDEX, s->refs);
      lua_rawgeti(P, -1, proxy_id(H, i));
      lua_remove(P, -2);
      return;
    }
    __attribute__((fallthrough)); /* a host function stays out, as: */
  default: /* a userdata or a thread */
    lua_pushnil(P);
  }
}

/* ---- policy -> host ------------------------------------------------------ */

void msrt_lpolicy_prepare(lua_State *P, pstate *s, int i, int depth) {
  i = i < 0 ? lua_gettop(P) + i + 1 : i;
  if (depth > MAX_DEPTH) luaL_error(P, "value nested deeper than %d (or a cycle)", MAX_DEPTH);
  luaL_checkstack(P, 4, "policy value");
  switch (lua_type(P, i)) {
  case LUA_TNIL: case LUA_TBOOLEAN: case LUA_TNUMBER: case LUA_TSTRING: return;
  case LUA_TTABLE:
    lua_pushnil(P);
    while (lua_next(P, i)) {
      msrt_lpolicy_prepare(P, s, -2, depth + 1);
      msrt_lpolicy_prepare(P, s, -1, depth + 1);
      lua_pop(P, 1);
    }
    return;
  case LUA_TFUNCTION:
    lua_rawgeti(P, LUA_REGISTRYINDEX, s->refs);
    lua_pushvalue(P, i);
    lua_rawget(P, -2);
    if (lua_isnil(P, -1)) {
      int id = ++s->next_id;
      lua_pushvalue(P, i);
      lua_pushinteger(P, id);
      lua_rawset(P, -4);
      lua_pushvalue(P, i);
      lua_rawseti(P, -3, id);
    }
    lua_pop(P, 2);
    return;
  default:
    luaL_error(P, "a %s cannot leave the policy sandbox", luaL_typename(P, i));
  }
}

void msrt_lpolicy_copy_out(lua_State *P, int i, lua_State *H, int ps) {
  i = i < 0 ? lua_gettop(P) + i + 1 : i;
  luaL_checkstack(H, 4, "policy value");
  switch (lua_type(P, i)) {
  case LUA_TBOOLEAN: lua_pushboolean(H, lua_toboolean(P, i)); return;
  case LUA_TNUMBER: lua_pushnumber(H, lua_tonumber(P, i)); return;
  case LUA_TSTRING: {
    size_t n;
    const char *str = lua_tolstring(P, i, &n);
    lua_pushlstring(H, str, n);
    return;
  }
  case LUA_TTABLE:
    lua_newtable(H);
    lua_pushnil(P);
    while (lua_next(P, i)) {
      msrt_lpolicy_copy_out(P, -2, H, ps);
      msrt_lpolicy_copy_out(P, -1, H, ps);
      lua_rawset(H, -3);
      lua_pop(P, 1);
    }
    return;
  case LUA_TFUNCTION: {
    pstate *s = lua_touserdata(H, ps);
    lua_rawgeti(P, LUA_REGISTRYINDEX, s->refs);
    lua_pushvalue(P, i);
    lua_rawget(P, -2);
    lua_Integer id = lua_tointeger(P, -1);
    lua_pop(P, 2);
    lua_pushvalue(H, ps);
    lua_pushinteger(H, id);
    lua_pushcclosure(H, msrt_lpolicy_proxy_call, 2);
    return;
  }
  default: lua_pushnil(H);
  }
}
