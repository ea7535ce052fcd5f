/* msrt.core's NATS bridge (bridge/bridge.h): nats_open, nats_filters,
 * nats_info, nats_stats, nats_flush, nats_close; lua/msrt/nats.lua is their caller,
 * which has checked the options' types. Hub thread only. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/bridge.h"
#include "lua/lerror.h"
#include "lua/lfield.h"
#include "lua/lrt.h"

static const char BRIDGE_META[] = "msrt.nats.bridge";

typedef struct {
  msrt_bridge *b; /* NULL once closed */
} bridge_box;

static bridge_box *box(lua_State *L) {
  return luaL_checkudata(L, 1, BRIDGE_META);
}

static msrt_bridge *open_bridge(lua_State *L) {
  bridge_box *bx = box(L);
  if (!bx->b) luaL_error(L, "the NATS bridge is closed");
  return bx->b;
}

msrt_bridge *msrt_lua_check_bridge(lua_State *L, int idx) {
  bridge_box *bx = luaL_checkudata(L, idx, BRIDGE_META);
  if (!bx->b) luaL_error(L, "the NATS bridge is closed");
  return bx->b;
}

/* nats_open(opts) -> bridge | nil, err. opts: servers (list), user,
 * password, token, creds, name, reconnect_buffer, reconnect_wait_ms,
 * connect_timeout_ms, pending_msgs, max_payload, send_asap. */
static int l_open(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  msrt_rt *rt = msrt_lua_rt(L);
  msrt_bridge_opts o = {
      .user = msrt_lua_field_str(L, 1, "user"),
      .password = msrt_lua_field_str(L, 1, "password"),
      .token = msrt_lua_field_str(L, 1, "token"),
      .creds = msrt_lua_field_str(L, 1, "creds"),
      .name = msrt_lua_field_str(L, 1, "name"),
      .reconnect_buffer =
          (int64_t)msrt_lua_field_num(L, 1, "reconnect_buffer", 0),
      .reconnect_wait_ms =
          (int64_t)msrt_lua_field_num(L, 1, "reconnect_wait_ms", 0),
      .connect_timeout_ms =
          (int64_t)msrt_lua_field_num(L, 1, "connect_timeout_ms", 0),
      .pending_msgs = (int)msrt_lua_field_num(L, 1, "pending_msgs", 0),
      .max_payload = (size_t)msrt_lua_field_num(L, 1, "max_payload", 0),
      .send_asap = msrt_lua_field_bool(L, 1, "send_asap"),
      .loop = msrt_hub_loop(rt->hub),
  };
  o.servers = msrt_lua_field_strs(L, 1, "servers", &o.nservers);
  bridge_box *bx = lua_newuserdata(L, sizeof *bx);
  bx->b = NULL;
  luaL_getmetatable(L, BRIDGE_META);
  lua_setmetatable(L, -2);
  msrt_error err;
  if (msrt_bridge_open(rt->bus, &o, &bx->b, &err) != MSRT_E_OK)
    return msrt_lua_fail_err(L, &err);
  return 1;
}

/* nats_filters(bridge, import, export) -> true | nil, err */
static int l_filters(lua_State *L) {
  msrt_bridge *b = open_bridge(L);
  lua_newtable(L); /* an options-like table holding both lists */
  lua_pushvalue(L, 2);
  lua_setfield(L, -2, "import");
  lua_pushvalue(L, 3);
  lua_setfield(L, -2, "export");
  int t = lua_gettop(L);
  size_t ni, ne; /* more than the bridge takes: its limit error */
  const char **imp = msrt_lua_field_strs(L, t, "import", &ni);
  const char **exp = msrt_lua_field_strs(L, t, "export", &ne);
  msrt_error err;
  if (msrt_bridge_set_filters(b, imp, ni, exp, ne, &err) != MSRT_E_OK)
    return msrt_lua_fail_err(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

/* The info table of in. */
static void push_info(lua_State *L, const msrt_bridge_info *in) {
  lua_createtable(L, 0, 11);
  lua_pushstring(L, msrt_bridge_state_name(in->state));
  lua_setfield(L, -2, "state");
  const struct {
    const char *name;
    double v;
  } n[] = {{"reconnects", (double)in->reconnects},
           {"slow_consumer", (double)in->slow_consumer},
           {"slow_dropped", (double)in->slow_dropped},
           {"loops", (double)in->loops},
           {"nats_subs", (double)in->nats_subs},
           {"received", (double)in->received},
           {"server_max_payload", (double)in->server_max_payload},
           {"max_payload", (double)in->max_payload}};
  for (size_t i = 0; i < sizeof n / sizeof n[0]; i++) {
    lua_pushnumber(L, n[i].v);
    lua_setfield(L, -2, n[i].name);
  }
  lua_pushstring(L, in->url);
  lua_setfield(L, -2, "url");
  lua_pushstring(L, in->last_error);
  lua_setfield(L, -2, "last_error");
}

static int l_info(lua_State *L) {
  msrt_bridge_info in;
  msrt_bridge_info_get(open_bridge(L), &in);
  push_info(L, &in);
  return 1;
}

/* {[class] = {handed = n, exported = n, ...}} of v's first n classes. */
static void push_stats(lua_State *L, uint64_t (*v)[MSRT_BRIDGE__COUNT],
                       size_t n) {
  msrt_rt *rt = msrt_lua_rt(L);
  msrt_class_stats names[MSRT_CLASS_MAX];
  size_t m = msrt_account_classes(msrt_router_account(rt->router), names,
                                  MSRT_CLASS_MAX);
  if (m < n) n = m;
  lua_createtable(L, 0, (int)n);
  for (size_t c = 0; c < n && c < MSRT_CLASS_MAX; c++) {
    lua_createtable(L, 0, MSRT_BRIDGE__COUNT);
    for (int s = 0; s < MSRT_BRIDGE__COUNT; s++) {
      lua_pushnumber(L, (double)v[c][s]);
      lua_setfield(L, -2, msrt_bridge_stat_name((msrt_bridge_stat)s));
    }
    lua_setfield(L, -2, names[c].name);
  }
}

/* nats_stats(bridge) -> {[class] = {handed = n, exported = n, ...}} */
static int l_stats(lua_State *L) {
  static uint64_t v[MSRT_CLASS_MAX][MSRT_BRIDGE__COUNT];
  size_t n = msrt_bridge_stats(open_bridge(L), v, MSRT_CLASS_MAX);
  push_stats(L, v, n);
  return 1;
}

/* nats_flush(bridge, timeout_ms) -> true | nil, err */
static int l_flush(lua_State *L) {
  msrt_error err;
  if (msrt_bridge_flush(open_bridge(L), (int64_t)luaL_optnumber(L, 2, 2000),
                        &err) != MSRT_E_OK)
    return msrt_lua_fail_err(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

/* nats_close(bridge) -> info, stats: the final counters (as nats_info
 * and nats_stats); nothing when it was closed already. */
static int l_close(lua_State *L) {
  bridge_box *bx = box(L);
  if (!bx->b) return 0;
  msrt_bridge_last last;
  msrt_bridge_close(bx->b, &last);
  bx->b = NULL;
  push_info(L, &last.info);
  push_stats(L, last.stats, last.nclasses);
  return 2;
}

void msrt_lua_open_bridge(lua_State *L) {
  /* no __gc: the bridge is closed before the runtime stops (nats.lua),
   * never by a collection that could come after the bus is gone */
  luaL_newmetatable(L, BRIDGE_META);
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"nats_open", l_open},
                                 {"nats_filters", l_filters},
                                 {"nats_info", l_info},
                                 {"nats_stats", l_stats},
                                 {"nats_close", l_close},
                                 {"nats_flush", l_flush},
                                 {NULL, NULL}};
  for (const luaL_Reg *f = fns; f->name; f++) {
    lua_pushcfunction(L, f->func);
    lua_setfield(L, -2, f->name);
  }
}
