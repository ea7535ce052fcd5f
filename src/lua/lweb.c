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
 *   outlive the listener), exchange (fn(x): a request on exchange_path,
 *   any method, x = {id, method, origin, accept, header (the request
 *   header exchange_header names), body}, at most body_max bytes (default
 *   1 MiB); answered later by listener:respond; it must not yield), gone
 *   (fn(id): an exchange's client went away unanswered). Errors as msrt_web_listen's (invalid_arg, network, nomem,
 *   internal). A wrong argument type raises.
 * listener:respond(id, status, type, body [, hname, hvalue]) -> true |
 *   nil, err (not_found, closed): answer exchange id, one more header.
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
  int exchange, gone; /* registry refs of those functions, or LUA_NOREF */
} lweb;

/* Call the function of registry ref fn with the nargs values on top; an
 * error is reported (the listener goes on). */
static void call_ref(lweb *lw, int fn, int nargs, const char *what) {
  lua_State *L = lw->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, fn);
  lua_insert(L, -nargs - 1);
  if (lua_pcall(L, nargs, 0, 0)) {
    msrt_host_report(msrt_host_get(L), what, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

/* exchange(x): x = {id, method, origin, accept, header, body}. */
static void on_exchange(void *ud, const msrt_web_exchange *x) {
  lweb *lw = ud;
  lua_State *L = lw->L;
  lua_createtable(L, 0, 6);
  msrt_lua_set_num(L, "id", (double)x->id);
  lua_pushstring(L, x->method), lua_setfield(L, -2, "method");
  lua_pushstring(L, x->origin), lua_setfield(L, -2, "origin");
  lua_pushstring(L, x->accept), lua_setfield(L, -2, "accept");
  lua_pushstring(L, x->header), lua_setfield(L, -2, "header");
  lua_pushlstring(L, x->body, x->len), lua_setfield(L, -2, "body");
  call_ref(lw, lw->exchange, 1, "web listener exchange");
}

static void on_gone(void *ud, unsigned long id) {
  lweb *lw = ud;
  if (lw->gone == LUA_NOREF) return;
  lua_pushnumber(lw->L, (double)id);
  call_ref(lw, lw->gone, 1, "web listener exchange gone");
}

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

/* opts.exchange (a function) with exchange_path, exchange_header,
 * body_max and gone into cfg and lw (strings stay on the stack). */
static void read_exchange(lua_State *L, lweb *lw, msrt_web_config *cfg) {
  lua_getfield(L, 1, "exchange");
  if (lua_isnil(L, -1)) return;
  luaL_checktype(L, -1, LUA_TFUNCTION);
  lw->exchange = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getfield(L, 1, "gone");
  if (!lua_isnil(L, -1)) {
    luaL_checktype(L, -1, LUA_TFUNCTION);
    lw->gone = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_getfield(L, 1, "exchange_path");
  cfg->exchange_path = luaL_checkstring(L, -1);
  lua_getfield(L, 1, "exchange_header");
  cfg->exchange_header = luaL_optstring(L, -1, NULL);
  cfg->body_max = (size_t)opt_int(L, "body_max", 1 << 20);
  cfg->exchange = on_exchange, cfg->gone = on_gone, cfg->ud = lw;
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
  lw->exchange = lw->gone = LUA_NOREF;
  luaL_getmetatable(L, META);
  lua_setmetatable(L, -2);
  int self = lua_gettop(L);
  read_exchange(L, lw, &cfg);
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
  lua_pushvalue(L, self);
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

/* listener:respond(id, status, type, body [, hname, hvalue]) -> true |
 * nil, err (not_found: answered already or its client went away; closed) */
static int l_respond(lua_State *L) {
  lweb *lw = check(L);
  unsigned long id = (unsigned long)luaL_checknumber(L, 2);
  int status = (int)luaL_checkinteger(L, 3);
  const char *type = luaL_checkstring(L, 4);
  size_t len = 0;
  const char *b = luaL_optlstring(L, 5, "", &len);
  const char *hname = luaL_optstring(L, 6, NULL), *hvalue = luaL_optstring(L, 7, "");
  if (!lw->web) return msrt_lua_fail(L, MSRT_E_CLOSED, "the listener is closed");
  char *body = len ? malloc(len) : NULL;
  if (len && !body) return msrt_lua_fail(L, MSRT_E_NOMEM, "no memory for the answer");
  if (len) memcpy(body, b, len);
  if (msrt_web_respond(lw->web, id, status, type, hname, hvalue, body, len) != MSRT_E_OK)
    return msrt_lua_fail(L, MSRT_E_NOT_FOUND, "no such exchange waits (answered, or its client went away)");
  lua_pushboolean(L, 1);
  return 1;
}

static int l_close(lua_State *L) {
  lweb *lw = check(L);
  msrt_web_close(lw->web);
  lw->web = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, lw->answer);
  luaL_unref(L, LUA_REGISTRYINDEX, lw->exchange);
  luaL_unref(L, LUA_REGISTRYINDEX, lw->gone);
  lw->answer = lw->exchange = lw->gone = LUA_NOREF;
  return 0;
}

void msrt_lua_open_web(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"port", l_port}, {"stats", l_stats}, {"respond", l_respond}, {"close", l_close}, {NULL, NULL}};
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
