/* msrt.core's NATS face (nats/conn.h, nats/listen.h, nats/auth.h) for the
 * hub's Lua: nats_server and the server and listener handles;
 * lua/msrt/listen.lua is their caller. Hub thread only. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "lua/lerror.h"
#include "lua/lfield.h"
#include "lua/lrt.h"
#include "nats/auth.h"
#include "nats/listen.h"
#include "router/subject.h"

static const char SERVER_META[] = "msrt.nats_server";
static const char LISTENER_META[] = "msrt.nats_listener";

typedef struct {
  msrt_nats_server *s;    /* NULL once closed */
  msrt_nats_policy *auth; /* the policy in force, or NULL */
} lserver;

typedef struct {
  msrt_nats_listener *l; /* NULL once closed */
} llistener;

msrt_nats_server *msrt_lua_nats_server(lua_State *L, int idx) {
  lserver *ls = luaL_checkudata(L, idx, SERVER_META);
  if (!ls->s) luaL_error(L, "the NATS server is closed");
  return ls->s;
}

/* {max_payload, max_control, max_pending, write_deadline_ms,
 * ping_interval_ms (0: none), max_pings_out, max_conns, max_subs} */
static msrt_nats_opts read_opts(lua_State *L, int t) {
  luaL_checktype(L, t, LUA_TTABLE);
  msrt_nats_opts o = {0};
  o.max_payload = (size_t)msrt_lua_field_size(L, t, "max_payload");
  o.max_control = (size_t)msrt_lua_field_size(L, t, "max_control");
  o.max_pending = (size_t)msrt_lua_field_size(L, t, "max_pending");
  o.write_deadline_ms = (uint64_t)msrt_lua_field_size(L, t, "write_deadline_ms");
  o.ping_interval_ms = (uint64_t)msrt_lua_field_size(L, t, "ping_interval_ms");
  if (!o.ping_interval_ms) o.ping_interval_ms = UINT64_MAX;
  o.max_pings_out = (int)msrt_lua_field_size(L, t, "max_pings_out");
  o.max_conns = (size_t)msrt_lua_field_size(L, t, "max_conns");
  o.max_subs = (size_t)msrt_lua_field_size(L, t, "max_subs");
  return o;
}

/* nats_server(opts) -> server | nil, err */
static int l_nats_server(lua_State *L) {
  msrt_rt *rt = msrt_lua_rt(L);
  msrt_nats_opts o = read_opts(L, 1);
  lserver *ls = lua_newuserdata(L, sizeof *ls);
  memset(ls, 0, sizeof *ls);
  luaL_getmetatable(L, SERVER_META);
  lua_setmetatable(L, -2);
  msrt_error err;
  ls->s = msrt_nats_server_new(msrt_hub_loop(rt->hub), rt->bus, &o, &err);
  if (!ls->s) return msrt_lua_fail_err(L, &err);
  return 1;
}

static lserver *check_server(lua_State *L) {
  lserver *ls = luaL_checkudata(L, 1, SERVER_META);
  if (!ls->s) luaL_error(L, "the NATS server is closed");
  return ls;
}

/* server:listen(addr, {backlog, nodelay}) -> listener | nil, err */
static int l_listen(lua_State *L) {
  lserver *ls = check_server(L);
  const char *addr = luaL_checkstring(L, 2);
  msrt_nats_listen_opts o = {0};
  if (lua_istable(L, 3)) {
    o.backlog = (int)msrt_lua_field_size(L, 3, "backlog");
    o.nodelay = msrt_lua_field_bool(L, 3, "nodelay");
  }
  llistener *ll = lua_newuserdata(L, sizeof *ll);
  ll->l = NULL;
  luaL_getmetatable(L, LISTENER_META);
  lua_setmetatable(L, -2);
  msrt_error err;
  ll->l = msrt_nats_listen(ls->s, addr, &o, &err);
  if (!ll->l) return msrt_lua_fail_err(L, &err);
  return 1;
}

static int l_tune(lua_State *L) {
  lserver *ls = check_server(L);
  msrt_nats_opts o = read_opts(L, 2);
  msrt_nats_server_tune(ls->s, &o);
  return 0;
}

/* One user from the table at index t (checked by lua/msrt/listen.lua). */
static void read_user(lua_State *L, int t, msrt_nats_user *u) {
  memset(u, 0, sizeof *u);
  u->user = msrt_lua_field_str(L, t, "user");
  u->password = msrt_lua_field_str(L, t, "password");
  u->token = msrt_lua_field_str(L, t, "token");
  u->pub_allow = msrt_lua_field_strs(L, t, "publish_allow", &u->n_pub_allow);
  u->pub_deny = msrt_lua_field_strs(L, t, "publish_deny", &u->n_pub_deny);
  u->sub_allow = msrt_lua_field_strs(L, t, "subscribe_allow", &u->n_sub_allow);
  u->sub_deny = msrt_lua_field_strs(L, t, "subscribe_deny", &u->n_sub_deny);
  u->allow_responses = msrt_lua_field_bool(L, t, "allow_responses");
  u->max_responses = (int)msrt_lua_field_size(L, t, "max_responses");
  u->responses_ms = (uint64_t)msrt_lua_field_size(L, t, "responses_ms");
  u->max_connections = (size_t)msrt_lua_field_size(L, t, "max_connections");
}

/* server:set_auth(users | nil) -> true | nil, err: the policy in force
 * from now on; every open connection is decided again (nats/conn.h
 * msrt_nats_server_reauthorize). */
static int l_set_auth(lua_State *L) {
  lserver *ls = check_server(L);
  msrt_nats_policy *pol = NULL;
  if (!lua_isnil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    size_t n = lua_objlen(L, 2);
    msrt_nats_user *users = lua_newuserdata(L, (n ? n : 1) * sizeof *users);
    for (size_t i = 0; i < n; i++) {
      luaL_checkstack(L, 16, "too many users");
      lua_rawgeti(L, 2, (int)i + 1);
      luaL_checktype(L, -1, LUA_TTABLE);
      read_user(L, lua_gettop(L), &users[i]);
    }
    msrt_error err;
    pol = msrt_nats_policy_new(users, n, &err);
    if (!pol) return msrt_lua_fail_err(L, &err);
  }
  msrt_nats_auth au;
  if (pol) au = msrt_nats_policy_auth(pol);
  msrt_nats_server_set_auth(ls->s, pol ? &au : NULL);
  msrt_nats_server_reauthorize(ls->s);
  msrt_nats_policy_free(ls->auth);
  ls->auth = pol;
  lua_pushboolean(L, 1);
  return 1;
}

static void set_num(lua_State *L, const char *k, uint64_t v) {
  lua_pushnumber(L, (lua_Number)v);
  lua_setfield(L, -2, k);
}

static int l_stats(lua_State *L) {
  lserver *ls = check_server(L);
  msrt_nats_stats st;
  msrt_nats_server_stats(ls->s, &st);
  lua_createtable(L, 0, 8);
  set_num(L, "connections", st.connections);
  set_num(L, "accepted", st.accepted);
  set_num(L, "slow_consumers", st.slow_consumers);
  set_num(L, "refused", st.refused);
  set_num(L, "in_msgs", st.in_msgs);
  set_num(L, "in_bytes", st.in_bytes);
  set_num(L, "out_msgs", st.out_msgs);
  set_num(L, "out_bytes", st.out_bytes);
  return 1;
}

static int l_server_close(lua_State *L) {
  lserver *ls = luaL_checkudata(L, 1, SERVER_META);
  if (ls->s) msrt_nats_server_close(ls->s);
  ls->s = NULL;
  msrt_nats_policy_free(ls->auth);
  ls->auth = NULL;
  return 0;
}

static int l_port(lua_State *L) {
  llistener *ll = luaL_checkudata(L, 1, LISTENER_META);
  if (!ll->l) return luaL_error(L, "the listener is closed");
  lua_pushinteger(L, msrt_nats_listener_port(ll->l));
  return 1;
}

static int l_listener_tune(lua_State *L) {
  llistener *ll = luaL_checkudata(L, 1, LISTENER_META);
  luaL_checktype(L, 2, LUA_TTABLE);
  msrt_nats_listen_opts o = {
      .backlog = (int)msrt_lua_field_size(L, 2, "backlog"),
      .nodelay = msrt_lua_field_bool(L, 2, "nodelay")};
  if (ll->l) msrt_nats_listener_tune(ll->l, &o);
  return 0;
}

static int l_listener_close(lua_State *L) {
  llistener *ll = luaL_checkudata(L, 1, LISTENER_META);
  if (ll->l) msrt_nats_listener_close(ll->l);
  ll->l = NULL;
  return 0;
}

/* pattern_check(s) -> true | nil, err (invalid_subject): NATS' rules for
 * a subscription pattern (router/subject.h), for policy files checked
 * without a runtime. */
static int l_pattern_check(lua_State *L) {
  size_t n;
  const char *p = luaL_checklstring(L, 1, &n);
  msrt_error err;
  if (msrt_pattern_validate(p, n, 0, &err) != MSRT_E_OK)
    return msrt_lua_fail_err(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

static void meta(lua_State *L, const char *name, const luaL_Reg *methods) {
  if (luaL_newmetatable(L, name)) {
    lua_newtable(L);
    luaL_register(L, NULL, methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
}

void msrt_lua_open_nats(lua_State *L) {
  static const luaL_Reg server[] = {
    {"listen", l_listen}, {"tune", l_tune}, {"set_auth", l_set_auth},
    {"stats", l_stats}, {"close", l_server_close}, {NULL, NULL}};
  static const luaL_Reg listener[] = {
    {"port", l_port}, {"tune", l_listener_tune},
    {"close", l_listener_close}, {NULL, NULL}};
  meta(L, SERVER_META, server);
  meta(L, LISTENER_META, listener);
  lua_pushcfunction(L, l_nats_server);
  lua_setfield(L, -2, "nats_server");
  lua_pushcfunction(L, l_pattern_check);
  lua_setfield(L, -2, "pattern_check");
}
