#include "lua/lerror.h"

#include <lauxlib.h>
#include <stdarg.h>
#include <string.h>

static const char *const META = "msrt.error";

static int error_tostring(lua_State *L) {
  lua_getfield(L, 1, "message");
  lua_getfield(L, 1, "category");
  lua_getfield(L, 1, "code");
  lua_pushfstring(L, "%s (%s/%s)", luaL_optstring(L, -3, "?"),
                  luaL_optstring(L, -2, "?"), luaL_optstring(L, -1, "?"));
  return 1;
}

static void push_meta(lua_State *L) {
  if (luaL_newmetatable(L, META)) {
    lua_pushcfunction(L, error_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushstring(L, META);
    lua_setfield(L, -2, "__name");
  }
}

void msrt_lua_push_error(lua_State *L, const msrt_error *err) {
  lua_createtable(L, 0, 6);
  lua_pushstring(L, msrt_code_name(err->code));
  lua_setfield(L, -2, "code");
  lua_pushstring(L, msrt_category_name(err->category));
  lua_setfield(L, -2, "category");
  lua_pushstring(L, msrt_severity_name(err->severity));
  lua_setfield(L, -2, "severity");
  lua_pushstring(L, msrt_recovery_name(err->recovery));
  lua_setfield(L, -2, "recovery");
  lua_pushstring(L, err->message);
  lua_setfield(L, -2, "message");
  push_meta(L);
  lua_setmetatable(L, -2);
}

int msrt_lua_fail_err(lua_State *L, const msrt_error *err) {
  lua_pushnil(L);
  msrt_lua_push_error(L, err);
  return 2;
}

int msrt_lua_blocked(lua_State *L) {
  msrt_lua_fail(L, MSRT_E_MAILBOX_FULL, "blocked: full `block` endpoints");
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "blocked");
  return 2;
}

int msrt_lua_fail(lua_State *L, msrt_code code, const char *fmt, ...) {
  msrt_error err;
  va_list ap;
  va_start(ap, fmt);
  msrt_error_vset(&err, code, fmt, ap);
  va_end(ap);
  return msrt_lua_fail_err(L, &err);
}

int msrt_lua_error(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const char *message = luaL_checkstring(L, 2);
  msrt_code code = msrt_code_from_name(name);
  if (code == MSRT_E__COUNT) return luaL_argerror(L, 1, "unknown error code");
  msrt_error err;
  msrt_error_set(&err, code, "%s", message);
  msrt_lua_push_error(L, &err);
  /* The full message, not the C copy cut at MSRT_ERROR_MSG_MAX. */
  lua_pushvalue(L, 2);
  lua_setfield(L, -2, "message");
  if (lua_istable(L, 3)) {
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_settable(L, -4);
    }
  }
  return 1;
}

static int l_is_error(lua_State *L) {
  int is = 0;
  if (lua_getmetatable(L, 1)) {
    luaL_getmetatable(L, META);
    is = lua_rawequal(L, -1, -2);
  }
  lua_pushboolean(L, is);
  return 1;
}

void msrt_lua_open_errors(lua_State *L) {
  lua_pushcfunction(L, msrt_lua_error);
  lua_setfield(L, -2, "error");
  lua_pushcfunction(L, l_is_error);
  lua_setfield(L, -2, "is_error");
}
