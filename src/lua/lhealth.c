/* msrt.core's health-check functions: a Lua face for src/health (the probe
 * state machine). Running the probes is lua/msrt/health/ (its books.lua
 * is the one user of this face, and of the FFI entry points below). Times are the
 * caller's milliseconds (the hub loop's uv.now(), so that due times and
 * the loop's timers agree). Hub thread only. */
#include <lauxlib.h>
#include <string.h>

#include "health/health.h"
#include "lua/host.h"
#include "lua/lerror.h"
#include "lua/lhealth.h"

static const char HEALTH_META[] = "msrt.health";

static msrt_health *check(lua_State *L) {
  return luaL_checkudata(L, 1, HEALTH_META);
}

static msrt_probe_kind kind_arg(lua_State *L, int idx) {
  int k = msrt_probe_kind_from_name(luaL_checkstring(L, idx));
  if (k < 0) luaL_argerror(L, idx, "startup, liveness or readiness");
  return (msrt_probe_kind)k;
}

static int64_t now_arg(lua_State *L, int idx) {
  return (int64_t)luaL_checknumber(L, idx);
}

/* Read field k of the table at t into *out when present: a non-negative
 * integer. Returns 0, or -1 with err naming the probe and the field. */
static int int_field(lua_State *L, int t, const char *kind, const char *k,
                     int64_t *out, msrt_error *err) {
  lua_getfield(L, t, k);
  int rc = 0;
  if (!lua_isnil(L, -1)) {
    lua_Number v = lua_tonumber(L, -1);
    if (lua_type(L, -1) != LUA_TNUMBER || v != (lua_Number)(int64_t)v ||
        v < 0) {
      msrt_error_set(err, MSRT_E_INVALID_ARG,
                     "%s probe: %s must be a non-negative integer", kind, k);
      rc = -1;
    } else {
      *out = (int64_t)v;
    }
  }
  lua_pop(L, 1);
  return rc;
}

/* The config of probe kind from the table at t (defaults for what it
 * leaves out), checked. */
static msrt_code config_of(lua_State *L, int t, msrt_probe_kind kind,
                           msrt_probe_config *c, msrt_error *err) {
  const char *kn = msrt_probe_kind_name(kind);
  msrt_probe_config_default(c);
  int64_t fail = c->failure_threshold, succ = c->success_threshold;
  if (int_field(L, t, kn, "initial_delay_ms", &c->initial_delay_ms, err) ||
      int_field(L, t, kn, "interval_ms", &c->interval_ms, err) ||
      int_field(L, t, kn, "timeout_ms", &c->timeout_ms, err) ||
      int_field(L, t, kn, "failure_threshold", &fail, err) ||
      int_field(L, t, kn, "success_threshold", &succ, err))
    return err->code;
  if (fail > UINT32_MAX || succ > UINT32_MAX)
    return msrt_error_set(err, MSRT_E_INVALID_ARG,
                          "%s probe: threshold too large", kn);
  c->failure_threshold = (uint32_t)fail;
  c->success_threshold = (uint32_t)succ;
  return msrt_probe_config_check(kind, c, err);
}

/* health_new({startup = cfg, liveness = cfg, readiness = cfg}, now_ms)
 *   -> books | nil, err (invalid_arg). A cfg is a table of the Kubernetes
 *   fields (initial_delay_ms, interval_ms, timeout_ms, failure_threshold,
 *   success_threshold); an absent kind is no probe. */
static int l_health_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int64_t now = now_arg(L, 2);
  msrt_probe_config cfgs[MSRT_PROBE__COUNT];
  const msrt_probe_config *use[MSRT_PROBE__COUNT] = {NULL, NULL, NULL};
  msrt_error err;
  for (int k = 0; k < MSRT_PROBE__COUNT; k++) {
    lua_getfield(L, 1, msrt_probe_kind_name((msrt_probe_kind)k));
    if (lua_istable(L, -1)) {
      if (config_of(L, lua_gettop(L), (msrt_probe_kind)k, &cfgs[k], &err)) {
        lua_pushnil(L);
        msrt_lua_push_error(L, &err);
        return 2;
      }
      use[k] = &cfgs[k];
    }
    lua_pop(L, 1);
  }
  msrt_health *h = lua_newuserdata(L, sizeof *h);
  msrt_health_init(h, use, now);
  luaL_getmetatable(L, HEALTH_META);
  lua_setmetatable(L, -2);
  return 1;
}

/* h:begin(kind, now_ms) -> whether a run starts now (it is then in
 * flight until h:record) */
static int l_begin(lua_State *L) {
  msrt_health *h = check(L);
  lua_pushboolean(L, msrt_health_begin(h, kind_arg(L, 2), now_arg(L, 3)));
  return 1;
}

/* h:record(kind, ok, now_ms) -> changed, started, restart, ready (ready:
 * true / false when the child's readiness changed, else nil) */
static int l_record(lua_State *L) {
  msrt_health *h = check(L);
  unsigned ev = msrt_health_record(h, kind_arg(L, 2), lua_toboolean(L, 3),
                                   now_arg(L, 4));
  lua_pushboolean(L, ev & MSRT_HEALTH_EV_CHANGED);
  lua_pushboolean(L, ev & MSRT_HEALTH_EV_STARTED);
  lua_pushboolean(L, ev & MSRT_HEALTH_EV_RESTART);
  if (ev & MSRT_HEALTH_EV_READY) lua_pushboolean(L, 1);
  else if (ev & MSRT_HEALTH_EV_UNREADY) lua_pushboolean(L, 0);
  else lua_pushnil(L);
  return 4;
}

/* h:next(now_ms) -> ms until the next due run | nil (none waiting) */
static int l_next(lua_State *L) {
  int64_t d = msrt_health_next(check(L), now_arg(L, 2));
  if (d < 0) lua_pushnil(L);
  else lua_pushnumber(L, (lua_Number)d);
  return 1;
}

/* h:state() -> the child's state name; h:ready() -> boolean */
static int l_state(lua_State *L) {
  lua_pushstring(L, msrt_health_state_name(msrt_health_overall(check(L))));
  return 1;
}

static int l_ready(lua_State *L) {
  lua_pushboolean(L, msrt_health_ready(check(L)));
  return 1;
}

/* h:active(kind) -> whether that probe runs now (present, not gated) */
static int l_active(lua_State *L) {
  msrt_health *h = check(L);
  lua_pushboolean(L, msrt_health_active(h, kind_arg(L, 2)));
  return 1;
}

/* h:probe(kind) -> {state, successes, failures, runs, oks, fails,
 * interval_ms, timeout_ms} | nil when the child has no such probe */
static int l_probe(lua_State *L) {
  msrt_health *h = check(L);
  const msrt_probe *p = &h->p[kind_arg(L, 2)];
  if (!p->present) return 0;
  lua_createtable(L, 0, 8);
  lua_pushstring(L, msrt_health_state_name(p->state));
  lua_setfield(L, -2, "state");
  msrt_lua_set_num(L, "successes", p->successes);
  msrt_lua_set_num(L, "failures", p->failures);
  msrt_lua_set_num(L, "runs", (double)p->runs);
  msrt_lua_set_num(L, "oks", (double)p->oks);
  msrt_lua_set_num(L, "fails", (double)p->fails);
  msrt_lua_set_num(L, "interval_ms", (double)p->cfg.interval_ms);
  msrt_lua_set_num(L, "timeout_ms", (double)p->cfg.timeout_ms);
  return 1;
}

/* h:pointer() -> the msrt_health * as a light userdata, for the FFI entry
 * points (msrt_health_begin, _record, _next of health/health.h, which
 * msrt-lua exports): valid while h is referenced. */
static int l_pointer(lua_State *L) {
  lua_pushlightuserdata(L, check(L));
  return 1;
}

/* The numbers the FFI path needs, from health/health.h rather than
 * restated in Lua: health_kinds {startup = 0, ...} (msrt_probe_kind),
 * health_events {changed = 1, ...} (MSRT_HEALTH_EV_*), health_defaults
 * {interval_ms = 10000, ...} (msrt_probe_config_default). */
static void open_constants(lua_State *L) {
  lua_createtable(L, 0, MSRT_PROBE__COUNT);
  for (int k = 0; k < MSRT_PROBE__COUNT; k++) {
    lua_pushinteger(L, k);
    lua_setfield(L, -2, msrt_probe_kind_name((msrt_probe_kind)k));
  }
  lua_setfield(L, -2, "health_kinds");
  lua_createtable(L, 0, 5);
  msrt_lua_set_num(L, "changed", MSRT_HEALTH_EV_CHANGED);
  msrt_lua_set_num(L, "started", MSRT_HEALTH_EV_STARTED);
  msrt_lua_set_num(L, "restart", MSRT_HEALTH_EV_RESTART);
  msrt_lua_set_num(L, "ready", MSRT_HEALTH_EV_READY);
  msrt_lua_set_num(L, "unready", MSRT_HEALTH_EV_UNREADY);
  lua_setfield(L, -2, "health_events");
  msrt_probe_config d;
  msrt_probe_config_default(&d);
  lua_createtable(L, 0, 5);
  msrt_lua_set_num(L, "initial_delay_ms", (double)d.initial_delay_ms);
  msrt_lua_set_num(L, "interval_ms", (double)d.interval_ms);
  msrt_lua_set_num(L, "timeout_ms", (double)d.timeout_ms);
  msrt_lua_set_num(L, "failure_threshold", d.failure_threshold);
  msrt_lua_set_num(L, "success_threshold", d.success_threshold);
  lua_setfield(L, -2, "health_defaults");
}

void msrt_lua_open_health(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"begin", l_begin}, {"record", l_record}, {"next", l_next},
    {"state", l_state}, {"ready", l_ready}, {"active", l_active},
    {"probe", l_probe}, {"pointer", l_pointer}, {NULL, NULL}};
  if (luaL_newmetatable(L, HEALTH_META)) {
    luaL_register(L, NULL, methods);
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_health_new);
  lua_setfield(L, -2, "health_new");
  open_constants(L);
}
