/* msrt.core's web listener (lrt.h): src/web/web.h with its answer
 * callback running a Lua function of the main state. Hub thread only.
 *
 * core.web_listen(opts) -> listener | nil, err. opts: ip (numeric
 *   address), port (0: any), backlog, max, nodelay, read_timeout_ms,
 *   idle_timeout_ms, header_max (bytes), mounts ({ {prefix, dir}, ... },
 *   at most 8), answer (fn(path) -> status, content_type, body | nil:
 *   called on the hub for each request path; nil lets the mounts serve
 *   it; it must not yield, and an error in it is reported and answered
 *   500), nats (a core.nats_server: NATS clients over WebSocket; it must
 *   outlive the listener). Errors as msrt_web_listen's (invalid_arg, network, nomem,
 *   internal). A wrong argument type raises.
 * listener:port() -> the port; listener:stats() -> {open, accepted,
 *   refused}; listener:close() (also at collection; idempotent).
 */
#include "lua/lrt.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "lua/host.h"
#include "lua/lerror.h"
#include "web/web.h"

#define META "msrt.web_listener"

typedef struct lweb {
  msrt_web *web;
  lua_State *L; /* the main state (the caller may be a coroutine) */
  int answer;   /* registry ref of the answer function, or LUA_NOREF */
} lweb;

/* The answer function: status, type, body; nil declines; an error is
 * reported and answered 500 (the connection must get an answer). */
static bool answer(void *ud, const char *path, msrt_web_reply *out) {
  lweb *lw = ud;
  lua_State *L = lw->L;
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lw->answer);
  lua_pushstring(L, path);
  const char *body = NULL;
  size_t len = 0;
  if (lua_pcall(L, 1, 3, 0)) {
    msrt_host_report(msrt_host_get(L), "web listener answer", lua_tostring(L, -1));
    out->status = 500;
    body = "internal error\n", len = strlen(body);
  } else if (lua_isnil(L, -3)) {
    lua_settop(L, top);
    return false;
  } else {
    out->status = (int)lua_tointeger(L, -3);
    snprintf(out->type, sizeof out->type, "%s", luaL_optstring(L, -2, "text/plain"));
    body = lua_tolstring(L, -1, &len);
    if (!body) body = "", len = 0;
  }
  out->body = malloc(len ? len : 1);
  if (out->body) memcpy(out->body, body, len), out->len = len;
  else out->status = 500, out->len = 0;
  lua_settop(L, top);
  return true;
}

static lweb *check(lua_State *L) { return luaL_checkudata(L, 1, META); }

static int opt_int(lua_State *L, const char *k, int dflt) {
  lua_getfield(L, 1, k);
  int v = lua_isnil(L, -1) ? dflt : (int)luaL_checkinteger(L, -1);
  lua_pop(L, 1);
  return v;
}

/* opts.mounts into cfg (strings stay on the Lua stack until listen
 * copied them: the caller pops them). */
static void read_mounts(lua_State *L, msrt_web_config *cfg) {
  lua_getfield(L, 1, "mounts");
  if (lua_isnil(L, -1)) return;
  luaL_checktype(L, -1, LUA_TTABLE);
  int t = lua_gettop(L);
  for (int i = 0; i < MSRT_WEB_MOUNTS; i++) {
    lua_rawgeti(L, t, i + 1);
    if (lua_isnil(L, -1)) return;
    luaL_checktype(L, -1, LUA_TTABLE);
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    cfg->mounts[i].prefix = luaL_checkstring(L, -2);
    cfg->mounts[i].dir = luaL_checkstring(L, -1);
  }
}

static int l_web_listen(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  msrt_web_config cfg;
  memset(&cfg, 0, sizeof cfg);
  lua_getfield(L, 1, "ip");
  cfg.ip = luaL_checkstring(L, -1);
  cfg.port = opt_int(L, "port", 0);
  cfg.backlog = opt_int(L, "backlog", 511);
  cfg.max_conns = opt_int(L, "max", 1024);
  cfg.read_timeout_ms = (unsigned)opt_int(L, "read_timeout_ms", 5000);
  cfg.idle_timeout_ms = (unsigned)opt_int(L, "idle_timeout_ms", 30000);
  cfg.header_max = (unsigned)opt_int(L, "header_max", 8192);
  lua_getfield(L, 1, "nodelay");
  cfg.nodelay = lua_toboolean(L, -1);
  lua_getfield(L, 1, "answer");
  int has_answer = !lua_isnil(L, -1);
  if (has_answer) luaL_checktype(L, -1, LUA_TFUNCTION);
  lua_getfield(L, 1, "nats");
  if (!lua_isnil(L, -1)) cfg.nats = msrt_lua_nats_server(L, lua_gettop(L));
  read_mounts(L, &cfg);
  lweb *lw = lua_newuserdata(L, sizeof *lw);
  lw->web = NULL, lw->L = msrt_host_get(L)->L, lw->answer = LUA_NOREF;
  luaL_getmetatable(L, META);
  lua_setmetatable(L, -2);
  if (has_answer) {
    lua_getfield(L, 1, "answer");
    lw->answer = luaL_ref(L, LUA_REGISTRYINDEX);
    cfg.answer = answer, cfg.ud = lw;
  }
  msrt_error err;
  lw->web = msrt_web_listen(msrt_hub_loop(msrt_host_get(L)->hub), &cfg, &err);
  if (!lw->web) {
    lua_pushnil(L);
    msrt_lua_push_error(L, &err);
    return 2;
  }
  return 1;
}

static int l_port(lua_State *L) {
  lweb *lw = check(L);
  if (!lw->web) return msrt_lua_fail(L, MSRT_E_CLOSED, "the listener is closed");
  lua_pushinteger(L, msrt_web_port(lw->web));
  return 1;
}

static int l_stats(lua_State *L) {
  lweb *lw = check(L);
  lua_createtable(L, 0, 3);
  msrt_lua_set_num(L, "open", lw->web ? msrt_web_open(lw->web) : 0);
  msrt_lua_set_num(L, "accepted", lw->web ? (double)msrt_web_accepted(lw->web) : 0);
  msrt_lua_set_num(L, "refused", lw->web ? (double)msrt_web_refused(lw->web) : 0);
  return 1;
}

static int l_close(lua_State *L) {
  lweb *lw = check(L);
  msrt_web_close(lw->web);
  lw->web = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, lw->answer);
  lw->answer = LUA_NOREF;
  return 0;
}

void msrt_lua_open_web(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"port", l_port}, {"stats", l_stats}, {"close", l_close}, {NULL, NULL}};
  luaL_newmetatable(L, META);
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "__index");
  luaL_register(L, NULL, methods);
  lua_pushcfunction(L, l_close);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_web_listen);
  lua_setfield(L, -2, "web_listen");
}
