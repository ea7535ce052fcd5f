/* msrt.core's routing tables (router/routes.h): a Lua list of rules read
 * raw (plain data: no metamethod runs) and compiled, then installed in the
 * router; lua/msrt/routes.lua is their caller. Hub thread only. */
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "lua/lerror.h"
#include "lua/lrt.h"
#include "router/routes.h"

static const char ROUTES_META[] = "msrt.routes";

/* A compiled table; t is NULL once the router owns it (or it was freed). */
typedef struct {
  msrt_routes *t;
} routes_box;

static int routes_gc(lua_State *L) {
  routes_box *b = luaL_checkudata(L, 1, ROUTES_META);
  msrt_routes_free(b->t);
  b->t = NULL;
  return 0;
}

static const char *const RULE_KEYS[] = {"match", "rewrite", "split",
                                        "dead_letter", NULL};
static const char *const TARGET_KEYS[] = {"to", "weight", NULL};

/* Push field k of the table at idx (absolute) without metamethods: a rule
 * is plain data, and an __index could hand out a different (or
 * unanchored) value each time it is asked. */
static int raw_field(lua_State *L, int idx, const char *k) {
  lua_pushstring(L, k);
  lua_rawget(L, idx);
  return lua_type(L, -1);
}

/* Refuse a key of the table at idx (absolute) that is not in keys: a typo
 * such as `dead_leter` must not pass as a rule without its action. */
static msrt_code check_keys(lua_State *L, int idx, const char *const *keys,
                            const char *where, msrt_error *err) {
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    size_t klen = 0;
    const char *k =
        lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &klen) : NULL;
    int i = 0; /* the length too: "rewrite\0typo" is not "rewrite" */
    while (k && keys[i] && (strlen(keys[i]) != klen || strcmp(k, keys[i])))
      i++;
    if (!k || !keys[i]) {
      msrt_error_set(err, MSRT_E_BAD_CONFIG, "%s: unknown field %s%s%s",
                     where, k ? "'" : "(a ", k ? k : luaL_typename(L, -1),
                     k ? "'" : " key)");
      lua_pop(L, 1);
      return MSRT_E_BAD_CONFIG;
    }
  }
  return MSRT_E_OK;
}

/* Field k of the table at idx as a string (NULL when absent). The table
 * keeps the string alive (a raw get: the value is in the table). */
static msrt_code str_field(lua_State *L, int idx, const char *k,
                           const char *where, const char **out,
                           msrt_error *err) {
  raw_field(L, idx, k);
  size_t len = 0;
  int type = lua_type(L, -1);
  *out = type == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
  lua_pop(L, 1);
  if (type != LUA_TSTRING && type != LUA_TNIL)
    return msrt_error_set(err, MSRT_E_BAD_CONFIG,
                          "%s: %s must be a string, got %s", where, k,
                          lua_typename(L, type));
  if (*out && strlen(*out) != len)
    return msrt_error_set(err, MSRT_E_BAD_CONFIG, "%s: %s holds a NUL byte",
                          where, k);
  return MSRT_E_OK;
}

/* Split target j (1-based) of rule no: the table at the top of the stack. */
static msrt_code read_target(lua_State *L, size_t no, size_t j,
                             msrt_route_target *t, msrt_error *err) {
  char where[64];
  snprintf(where, sizeof where, "rule %zu: split target %zu", no, j);
  int idx = lua_gettop(L);
  if (!lua_istable(L, idx))
    return msrt_error_set(err, MSRT_E_BAD_CONFIG,
                          "%s: a target is a table {to = subject, weight = "
                          "n}, got %s", where, luaL_typename(L, idx));
  msrt_code c = check_keys(L, idx, TARGET_KEYS, where, err);
  if (c == MSRT_E_OK) c = str_field(L, idx, "to", where, &t->subject, err);
  if (c != MSRT_E_OK) return c;
  if (!t->subject)
    return msrt_error_set(err, MSRT_E_BAD_CONFIG, "%s: no 'to' subject", where);
  int is_num = raw_field(L, idx, "weight") == LUA_TNUMBER;
  t->weight = lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (!is_num)
    return msrt_error_set(err, MSRT_E_BAD_CONFIG,
                          "%s: weight must be a number", where);
  return MSRT_E_OK;
}

/* Rule no (1-based): the table at idx; its split targets go to tg. */
static msrt_code read_rule(lua_State *L, int idx, size_t no,
                           msrt_route_rule *r, msrt_route_target *tg,
                           msrt_error *err) {
  char where[32];
  snprintf(where, sizeof where, "rule %zu", no);
  memset(r, 0, sizeof *r);
  if (!lua_istable(L, idx))
    return msrt_error_set(err, MSRT_E_BAD_CONFIG, "%s: a rule is a table, "
                          "got %s", where, luaL_typename(L, idx));
  msrt_code c = check_keys(L, idx, RULE_KEYS, where, err);
  if (c == MSRT_E_OK) c = str_field(L, idx, "match", where, &r->match, err);
  if (c == MSRT_E_OK) c = str_field(L, idx, "rewrite", where, &r->rewrite, err);
  if (c == MSRT_E_OK)
    c = str_field(L, idx, "dead_letter", where, &r->dead_letter, err);
  if (c != MSRT_E_OK) return c;
  int st = raw_field(L, idx, "split");
  if (st != LUA_TNIL && st != LUA_TTABLE) {
    lua_pop(L, 1);
    return msrt_error_set(err, MSRT_E_BAD_CONFIG, "%s: split must be a list "
                          "of {to, weight}, got %s", where, lua_typename(L, st));
  }
  if (st == LUA_TTABLE) {
    r->split = tg;
    r->nsplit = lua_objlen(L, -1);
    for (size_t j = 0; j < r->nsplit && c == MSRT_E_OK; j++) {
      lua_rawgeti(L, -1, (int)j + 1);
      c = read_target(L, no, j + 1, &tg[j], err);
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  return c;
}

/* Split targets over all rules (the size of the scratch array). */
static size_t count_targets(lua_State *L, int rules, size_t n) {
  size_t total = 0;
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(L, rules, (int)i);
    if (lua_istable(L, -1)) {
      raw_field(L, lua_gettop(L), "split");
      if (lua_istable(L, -1)) total += lua_objlen(L, -1);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  return total;
}

/* Read and compile the list at index 1 into *out. */
static msrt_code compile_list(lua_State *L, size_t max_subject,
                              msrt_routes **out, msrt_error *err) {
  size_t n = lua_objlen(L, 1), nt = count_targets(L, 1, n);
  /* scratch as userdata: collected whatever happens */
  msrt_route_rule *rules = lua_newuserdata(L, (n ? n : 1) * sizeof *rules);
  msrt_route_target *tg = lua_newuserdata(L, (nt ? nt : 1) * sizeof *tg);
  msrt_code c = MSRT_E_OK;
  size_t i = 0;
  for (size_t used = 0; i < n && c == MSRT_E_OK; i++) {
    lua_rawgeti(L, 1, (int)i + 1);
    c = read_rule(L, lua_gettop(L), i + 1, &rules[i], tg + used, err);
    used += rules[i].nsplit;
    lua_pop(L, 1);
  }
  if (c != MSRT_E_OK && i > 1) { /* name the first bad rule, as routes.c does */
    msrt_error early;
    msrt_routes *t = NULL;
    if (msrt_routes_compile(rules, i - 1, max_subject, &t, &early) != MSRT_E_OK)
      *err = early;
    msrt_routes_free(t);
  }
  if (c == MSRT_E_OK) c = msrt_routes_compile(rules, n, max_subject, out, err);
  lua_pop(L, 2);
  return c;
}

/* routes_compile(rules [, max_subject]) -> routes | nil, err
 * A pure function of the list (and the limit: the runtime's max_subject
 * once it runs, else the argument): nothing is installed. err.code is
 * bad_config with err.rule the failing rule's position (from 1). */
static int l_routes_compile(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  msrt_rt *rt = msrt_lua_rt_opt(L);
  size_t max = rt ? rt->cfg.max_subject : (size_t)luaL_optinteger(L, 2, 0);
  routes_box *b = lua_newuserdata(L, sizeof *b);
  b->t = NULL;
  luaL_getmetatable(L, ROUTES_META);
  lua_setmetatable(L, -2);
  msrt_error err;
  if (compile_list(L, max, &b->t, &err) == MSRT_E_OK) return 1;
  unsigned long no;
  msrt_lua_fail_err(L, &err);
  if (sscanf(err.message, "rule %lu:", &no) == 1) {
    lua_pushnumber(L, (lua_Number)no);
    lua_setfield(L, -2, "rule");
  }
  return 2;
}

/* routes_install(routes) -> true | nil, err: the router's table becomes
 * routes (swapped atomically; the old one is freed once no reader sees
 * it). A compiled table installs once. */
static int l_routes_install(lua_State *L) {
  routes_box *b = luaL_checkudata(L, 1, ROUTES_META);
  msrt_rt *rt = msrt_lua_rt(L);
  if (!b->t) return luaL_argerror(L, 1, "this routing table was installed already");
  /* no rules: remove the table, so that publishing skips routing */
  msrt_routes *t = msrt_routes_count(b->t) ? b->t : NULL;
  if (msrt_router_set_routes(rt->router, t) != MSRT_E_OK)
    return msrt_lua_fail(L, MSRT_E_NOMEM, "out of memory installing routes");
  msrt_routes_free(t ? NULL : b->t);
  b->t = NULL;
  lua_pushboolean(L, 1);
  return 1;
}

void msrt_lua_open_routes(lua_State *L) {
  static const luaL_Reg fns[] = {{"routes_compile", l_routes_compile},
                                 {"routes_install", l_routes_install},
                                 {NULL, NULL}};
  if (luaL_newmetatable(L, ROUTES_META)) {
    lua_pushcfunction(L, routes_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  luaL_register(L, NULL, fns);
}
