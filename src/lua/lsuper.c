/* msrt.core's supervision functions: a Lua face for src/super (the child
 * table, restart intensity, backoff and action plans). The orchestration
 * is lua/msrt/supervisor.lua. Hub thread only.
 *
 * src/super owns the child table; what Lua keeps of a child (its handle,
 * its start spec, its probes: its record) hangs off the table's entry, in
 * the userdata's environment table keyed by id, so one add puts both in
 * and one delete takes both out (docs/architecture.md "Supervision"). */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "lua/lerror.h"
#include "lua/lfield.h"
#include "lua/lsuper.h"
#include "super/super.h"

static const char SUPER_META[] = "msrt.super";

typedef struct {
  msrt_super *s;
} box;

static msrt_super *check(lua_State *L) {
  box *b = luaL_checkudata(L, 1, SUPER_META);
  if (!b->s) luaL_argerror(L, 1, "supervisor table freed");
  return b->s;
}

static int64_t now_ms(void) { return (int64_t)(msrt_now_ns() / 1000000u); }

/* A uniform draw in [0, 1) for jitter: xorshift64, its own stream so the
 * user's math.random sequence is left alone. */
static double draw(void) {
  static uint64_t x;
  if (!x) x = msrt_now_ns() | 1;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return (double)(x >> 11) / 9007199254740992.0;
}

/* The tables read here come from supervisor.lua with every field filled
 * in (its M.DEFAULTS and backoff_of state each default once): a field
 * left out reads as -1, which src/super refuses naming it, never as a
 * default of its own. */
#define ABSENT (-1)

/* A backoff table {initial_ms, max_ms, multiplier, jitter} at index t. */
static msrt_backoff backoff_of(lua_State *L, int t) {
  return (msrt_backoff){msrt_lua_field_num(L, t, "initial_ms", ABSENT),
                        msrt_lua_field_num(L, t, "max_ms", ABSENT),
                        msrt_lua_field_num(L, t, "multiplier", ABSENT),
                        msrt_lua_field_num(L, t, "jitter", ABSENT)};
}

/* The flags from a table {intensity, period_ms, backoff} at index t (no
 * backoff table: no delay between restarts). */
static msrt_super_config config_of(lua_State *L, int t) {
  luaL_checktype(L, t, LUA_TTABLE);
  msrt_super_config cfg = {
      (int)msrt_lua_field_num(L, t, "intensity", ABSENT),
      (int64_t)msrt_lua_field_num(L, t, "period_ms", ABSENT),
      {0, 0, 1, 0}};
  lua_getfield(L, t, "backoff");
  if (lua_istable(L, -1)) cfg.backoff = backoff_of(L, lua_gettop(L));
  lua_pop(L, 1);
  return cfg;
}

/* super_new{intensity, period_ms, backoff = {initial_ms, max_ms,
 * multiplier, jitter}} -> table userdata | nil, err (invalid_arg) */
static int l_super_new(lua_State *L) {
  msrt_super_config cfg = config_of(L, 1);
  msrt_error err;
  msrt_super *s = msrt_super_new(&cfg, &err);
  if (!s) {
    lua_pushnil(L);
    msrt_lua_push_error(L, &err);
    return 2;
  }
  box *b = lua_newuserdata(L, sizeof *b);
  b->s = s;
  luaL_getmetatable(L, SUPER_META);
  lua_setmetatable(L, -2);
  lua_newtable(L); /* id -> the child's Lua record */
  lua_setfenv(L, -2);
  return 1;
}

/* records[id] = the value at idx (nil removes it); id at index 2. */
static void set_record(lua_State *L, int idx) {
  lua_getfenv(L, 1);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, idx);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

static int fail(lua_State *L, const msrt_error *err) {
  lua_pushnil(L);
  msrt_lua_push_error(L, err);
  return 2;
}

/* The spec of s:add / s:update from arguments 2..6. */
static msrt_child_spec spec_args(lua_State *L) {
  int r = msrt_restart_from_name(luaL_checkstring(L, 3));
  if (r < 0) luaL_argerror(L, 3, "permanent, transient or temporary");
  msrt_child_spec c = {luaL_checkstring(L, 2), (msrt_restart_type)r,
                       (int64_t)luaL_checknumber(L, 4), lua_toboolean(L, 5),
                       lua_toboolean(L, 6)};
  return c;
}

/* s:add(id, restart, shutdown_ms, is_supervisor, significant, record)
 * -> pos | nil, err; record (a table, optional) is what s:record(id)
 * gives until the child is deleted */
static int l_add(lua_State *L) {
  msrt_super *s = check(L);
  msrt_child_spec c = spec_args(L);
  msrt_error err;
  lua_settop(L, 7); /* no record: nil */
  size_t pos;
  if (msrt_super_add(s, &c, &pos, &err) != MSRT_E_OK) return fail(L, &err);
  set_record(L, 7);
  lua_pushinteger(L, (lua_Integer)pos + 1);
  return 1;
}

/* s:configure{intensity, period_ms, backoff} -> true | nil, err (a
 * reload; the restart window is kept) */
static int l_configure(lua_State *L) {
  msrt_super *s = check(L);
  msrt_super_config cfg = config_of(L, 2);
  msrt_error err;
  if (msrt_super_configure(s, &cfg, &err) != MSRT_E_OK) return fail(L, &err);
  lua_pushboolean(L, 1);
  return 1;
}

/* s:update(id, restart, shutdown_ms, is_supervisor, significant) -> pos
 * | nil, err (a reload: the child keeps its place and state) */
static int l_update(lua_State *L) {
  msrt_super *s = check(L);
  msrt_child_spec c = spec_args(L);
  msrt_error err;
  size_t pos;
  if (msrt_super_update(s, &c, &pos, &err) != MSRT_E_OK) return fail(L, &err);
  lua_pushinteger(L, (lua_Integer)pos + 1);
  return 1;
}

/* s:delete(id) -> true | nil, err (the child's record goes with it) */
static int l_delete(lua_State *L) {
  msrt_error err;
  if (msrt_super_delete(check(L), luaL_checkstring(L, 2), &err) != MSRT_E_OK)
    return fail(L, &err);
  lua_settop(L, 2);
  lua_pushnil(L);
  set_record(L, 3);
  lua_pushboolean(L, 1);
  return 1;
}

/* s:record(id) -> the record given to add | nil (no such child) */
static int l_record(lua_State *L) {
  check(L);
  luaL_checkstring(L, 2);
  lua_getfenv(L, 1);
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  return 1;
}

/* s:records() -> the children's records in start order */
static int l_records(lua_State *L) {
  msrt_super *s = check(L);
  size_t n = msrt_super_count(s);
  lua_getfenv(L, 1);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushstring(L, msrt_super_child(s, i)->id);
    lua_rawget(L, -3);
    lua_rawseti(L, -2, (int)i + 1);
  }
  return 1;
}

static int pos_of(lua_State *L, msrt_super *s, int arg) {
  int pos = msrt_super_find(s, luaL_checkstring(L, arg));
  if (pos < 0) luaL_argerror(L, arg, "no such child");
  return pos;
}

static void push_child(lua_State *L, const msrt_child *c) {
  lua_createtable(L, 0, 7);
  lua_pushstring(L, c->id);
  lua_setfield(L, -2, "id");
  lua_pushstring(L, msrt_restart_name(c->restart));
  lua_setfield(L, -2, "restart");
  if (c->shutdown_ms == MSRT_SHUTDOWN_BRUTAL_KILL) lua_pushliteral(L, "brutal_kill");
  else if (c->shutdown_ms == MSRT_SHUTDOWN_INFINITY) lua_pushliteral(L, "infinity");
  else lua_pushnumber(L, (lua_Number)c->shutdown_ms);
  lua_setfield(L, -2, "shutdown");
  lua_pushstring(L, msrt_child_state_name(c->state));
  lua_setfield(L, -2, "state");
  lua_pushinteger(L, (lua_Integer)c->attempts);
  lua_setfield(L, -2, "attempts");
  lua_pushboolean(L, c->significant);
  lua_setfield(L, -2, "significant");
  lua_pushstring(L, c->is_supervisor ? "supervisor" : "worker");
  lua_setfield(L, -2, "type");
  lua_pushnumber(L, (lua_Number)c->started_ms);
  lua_setfield(L, -2, "started_ms"); /* monotonic ms (core.now_ms) */
}

/* s:children() -> list of {id, restart, shutdown, state, attempts,
 * significant, type, started_ms} in start order (copies). */
static int l_children(lua_State *L) {
  msrt_super *s = check(L);
  size_t n = msrt_super_count(s);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    push_child(L, msrt_super_child(s, i));
    lua_rawseti(L, -2, (int)i + 1);
  }
  return 1;
}

/* s:child(id) -> the child's table (as children()) | nil */
static int l_child(lua_State *L) {
  msrt_super *s = check(L);
  int pos = msrt_super_find(s, luaL_checkstring(L, 2));
  if (pos < 0) return 0;
  push_child(L, msrt_super_child(s, (size_t)pos));
  return 1;
}

/* s:set_state(id, "stopped"|"running"|"stopping"|"restarting"|"starting") */
static int l_set_state(lua_State *L) {
  static const char *const names[] = {"stopped",    "running",  "stopping",
                                      "restarting", "starting", NULL};
  msrt_super *s = check(L);
  int pos = pos_of(L, s, 2);
  int st = luaL_checkoption(L, 3, NULL, names);
  /* pos_of and the option list have checked both: it cannot refuse */
  msrt_super_set_state(s, (size_t)pos, (msrt_child_state)st, now_ms());
  return 0;
}

/* s:add_restart() -> within_intensity, restarts in the window */
static int l_add_restart(lua_State *L) {
  msrt_super *s = check(L);
  int64_t now = now_ms();
  lua_pushboolean(L, msrt_super_add_restart(s, now));
  lua_pushinteger(L, (lua_Integer)msrt_super_restarts(s, now));
  return 2;
}

/* s:restarts() -> restarts in the window ending now */
static int l_restarts(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)msrt_super_restarts(check(L), now_ms()));
  return 1;
}

/* s:next_delay(id) -> ms before the child's next restart (backoff with
 * jitter; counts the attempt) */
static int l_next_delay(lua_State *L) {
  msrt_super *s = check(L);
  int pos = pos_of(L, s, 2); /* a known child: next_delay cannot refuse */
  double ms = 0;
  msrt_super_next_delay(s, (size_t)pos, now_ms(), draw(), &ms);
  lua_pushnumber(L, ms);
  return 1;
}

static int push_ids(lua_State *L, msrt_super *s, const size_t *pos,
                    size_t n) {
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushstring(L, msrt_super_child(s, pos[i])->id);
    lua_rawseti(L, -2, (int)i + 1);
  }
  return 1;
}

/* s:group("one"|"rest"|"all", id) -> ids affected, in start order */
static int l_group(lua_State *L) {
  static const char *const names[] = {"one", "rest", "all", NULL};
  msrt_super *s = check(L);
  int g = luaL_checkoption(L, 2, NULL, names);
  int pos = pos_of(L, s, 3);
  size_t *out = malloc((msrt_super_count(s) + 1) * sizeof *out);
  if (!out) return luaL_error(L, "out of memory");
  size_t n = msrt_super_group(s, (msrt_group)g, (size_t)pos, out);
  push_ids(L, s, out, n);
  free(out);
  return 1;
}

/* Read action i of the list at index t into a; strings stay on the stack
 * only as long as the list holds them (they are the list's own). */
static void read_action(lua_State *L, int t, int i, msrt_action_in *a) {
  memset(a, 0, sizeof *a);
  lua_rawgeti(L, t, i);
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "op");
    a->op = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
    lua_pop(L, 1);
    lua_getfield(L, -1, "child");
    a->child = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    lua_pop(L, 1);
    lua_getfield(L, -1, "delay_ms");
    a->has_delay = !lua_isnil(L, -1);
    a->delay_ms = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : -1;
    lua_pop(L, 1);
  } else {
    a->op = "?"; /* not a table: reported as a bad op */
  }
  lua_pop(L, 1);
}

static void push_plan(lua_State *L, msrt_super *s, const msrt_plan *p) {
  lua_createtable(L, 0, 4);
  lua_pushboolean(L, p->escalate);
  lua_setfield(L, -2, "escalate");
  push_ids(L, s, p->stops, p->nstops);
  lua_setfield(L, -2, "stops");
  push_ids(L, s, p->starts, p->nstarts);
  lua_setfield(L, -2, "starts");
  lua_pushnumber(L, p->delay_ms);
  lua_setfield(L, -2, "delay_ms");
}

/* s:plan(actions) -> {escalate, stops = ids (reverse start order), starts
 * = ids (start order), delay_ms} | nil, err (invalid_arg: why the list is
 * nonsense). actions must be a list (checked by the caller). */
static int l_plan(lua_State *L) {
  msrt_super *s = check(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  size_t n = lua_objlen(L, 2), count = msrt_super_count(s) + 1;
  msrt_action_in *in = calloc(n + 1, sizeof *in);
  size_t *stops = malloc(count * sizeof *stops);
  size_t *starts = malloc(count * sizeof *starts);
  if (!in || !stops || !starts) {
    free(in), free(stops), free(starts);
    return luaL_error(L, "out of memory");
  }
  for (size_t i = 0; i < n; i++) read_action(L, 2, (int)i + 1, &in[i]);
  msrt_plan p = {.stops = stops, .starts = starts};
  msrt_error err;
  msrt_code rc = msrt_super_plan(s, in, n, &p, &err);
  if (rc == MSRT_E_OK) push_plan(L, s, &p);
  free(in), free(stops), free(starts);
  return rc == MSRT_E_OK ? 1 : fail(L, &err);
}

/* backoff_delay(b, n, u) -> ms: the pure schedule (for tests, tools) of
 * a whole backoff table b (supervisor.lua's backoff_of fills one in) */
static int l_backoff_delay(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  msrt_backoff b = backoff_of(L, 1);
  lua_pushnumber(L, msrt_backoff_delay(&b, (unsigned)luaL_checkinteger(L, 2),
                                       luaL_optnumber(L, 3, 0.5)));
  return 1;
}

static int super_gc(lua_State *L) {
  box *b = luaL_checkudata(L, 1, SUPER_META);
  msrt_super_free(b->s);
  b->s = NULL;
  return 0;
}

void msrt_lua_open_super(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"add", l_add}, {"update", l_update}, {"configure", l_configure},
    {"delete", l_delete}, {"children", l_children},
    {"record", l_record}, {"records", l_records},
    {"child", l_child}, {"set_state", l_set_state},
    {"add_restart", l_add_restart}, {"restarts", l_restarts},
    {"next_delay", l_next_delay}, {"group", l_group}, {"plan", l_plan},
    {"__gc", super_gc}, {NULL, NULL}};
  if (luaL_newmetatable(L, SUPER_META)) {
    luaL_register(L, NULL, methods);
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_super_new);
  lua_setfield(L, -2, "super_new");
  lua_pushcfunction(L, l_backoff_delay);
  lua_setfield(L, -2, "backoff_delay");
}
