/* msrt.core functions for child processes: the registry of src/proc on
 * the hub loop, its events handed to lua/msrt/process.lua; its output and
 * its stdin lines go through the bus in C (bus/procs.h: no Lua on the
 * per-line path). Hub thread only. */
#include "lua/lproc.h"

#include <lauxlib.h>
#include <stdlib.h>

#include "bus/procs.h"
#include "lua/host.h"
#include "lua/lerror.h"
#include "lua/lrt.h"
#include "lua/rt.h"
#include "proc/proc.h"

static const char EVENT_KEY = 'p'; /* registry: process.lua's event fn */
static const char PROC_META[] = "msrt.proc";

static msrt_procs *reg;  /* made by the first spawn */
static lua_State *hub_L; /* the state events go to */
static int closed;       /* after proc_shutdown: no more spawns */

/* A Lua handle names its process by id, so it never dangles. */
typedef struct {
  uint64_t id;
} box;

/* ---- events to Lua ------------------------------------------------------ */

/* Push process.lua's event function, kind and the process id; 0 when none
 * is set (nothing pushed). */
static int event_begin(const char *kind, msrt_proc *p) {
  lua_State *L = hub_L;
  lua_pushlightuserdata(L, (void *)&EVENT_KEY);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (!lua_isfunction(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  lua_pushstring(L, kind);
  lua_pushnumber(L, (lua_Number)msrt_proc_id(p));
  return 1;
}

static void event_call(int nargs) {
  msrt_host_call(hub_L, nargs + 2, 0, "error in process event");
}

static msrt_code ev_publish(void *ud, msrt_proc *p, const char *s, size_t sl,
                            const char *r, size_t rl, const void *h, size_t hl,
                            const void *pl, size_t plen, msrt_error *err) {
  msrt_rt *rt = ((msrt_host *)ud)->rt;
  if (!rt) return msrt_error_set(err, MSRT_E_CLOSED, "the runtime is stopped");
  return msrt_bus_proc_publish(rt->bus, p, s, sl, r, rl, h, hl, pl, plen, err);
}

static void ev_bad(void *ud, msrt_proc *p, const char *reason,
                   const char *detail, const char *head, size_t hlen,
                   size_t total) {
  (void)ud;
  if (!event_begin("bad_output", p)) return;
  lua_pushstring(hub_L, reason);
  lua_pushstring(hub_L, detail);
  lua_pushlstring(hub_L, head, hlen);
  lua_pushnumber(hub_L, (lua_Number)total);
  event_call(4);
}

static void ev_stderr(void *ud, msrt_proc *p, const char *line, size_t len) {
  (void)ud;
  if (!event_begin("stderr", p)) return;
  lua_pushlstring(hub_L, line, len);
  event_call(1);
}

static void ev_state(void *ud, msrt_proc *p, msrt_proc_state s) {
  (void)ud;
  if (!event_begin("state", p)) return;
  lua_pushstring(hub_L, msrt_proc_state_name(s));
  event_call(1);
}

static void ev_exit(void *ud, msrt_proc *p, const msrt_proc_exit *x) {
  msrt_rt *rt = ((msrt_host *)ud)->rt;
  msrt_bus_proc_release(rt ? rt->bus : NULL, p);
  if (!event_begin("exit", p)) return;
  lua_State *L = hub_L;
  lua_createtable(L, 0, 7);
  lua_pushinteger(L, x->code);
  lua_setfield(L, -2, "code");
  if (x->signal) {
    const char *n = msrt_signal_name(x->signal);
    if (n) lua_pushstring(L, n);
    else lua_pushinteger(L, x->signal);
    lua_setfield(L, -2, "signal");
  }
  lua_pushboolean(L, x->normal);
  lua_setfield(L, -2, "normal");
  lua_pushboolean(L, x->stopped);
  lua_setfield(L, -2, "stopped");
  lua_pushlstring(L, x->stderr_tail, x->stderr_tail_len);
  lua_setfield(L, -2, "stderr");
  if (x->start_error) {
    lua_pushstring(L, x->start_error);
    lua_setfield(L, -2, "error");
  }
  event_call(1);
}

/* A stdin line the hub dropped on overflow (bus/procs.h). */
static void ev_dropped(void *ud, msrt_proc *p, const char *reason,
                       const msrt_envelope *e) {
  msrt_rt *rt = ((msrt_host *)ud)->rt;
  if (rt) msrt_bus_proc_dropped(rt->bus, p, reason, e);
}

static const msrt_proc_events EVENTS = {ev_publish, ev_bad, ev_stderr,
                                        ev_dropped, ev_state, ev_exit};

/* ---- stdin from the router ---------------------------------------------- */

static void bad_input(msrt_proc *p, const msrt_envelope *e,
                      const msrt_error *err) {
  if (!event_begin("bad_input", p)) return;
  lua_pushstring(hub_L, err->message);
  lua_pushlstring(hub_L, e->subject, e->subject_len);
  event_call(2);
}

/* An MSRT_IN_PROC item (bus/procs.h msrt_bus_proc_item), with the
 * bad_input event for a line the child cannot be given. */
void msrt_lproc_deliver(msrt_rt *rt, uint64_t id, msrt_envelope *e) {
  msrt_proc *p = reg ? msrt_procs_find(reg, id) : NULL;
  msrt_error err;
  if (e) msrt_env_ref(e); /* kept for the bad_input event */
  msrt_code rc = msrt_bus_proc_item(rt->bus, p, e, &err);
  if (p && e && (rc == MSRT_E_BAD_INPUT || rc == MSRT_E_PAYLOAD_TOO_BIG))
    bad_input(p, e, &err);
  msrt_env_unref(e);
}

static msrt_procs *need_reg(lua_State *L, msrt_error *err) {
  if (!reg && !closed) {
    hub_L = msrt_host_get(L)->L;
    msrt_host *h = msrt_host_get(L);
    reg = msrt_procs_new(msrt_hub_loop(h->hub), &EVENTS, h, err);
  } else if (closed) {
    msrt_error_set(err, MSRT_E_CLOSED, "the host is shutting down");
  }
  return reg;
}

/* proc_spawn(spec) -> box, id | nil, err, each followed by a warning to
 * log once (msrt_procs_take_warning) when there is one. spec is
 * process.lua's checked
 * table: name, argv, env ("K=V" list), cwd, codec, publish_as, allow,
 * deny, limits, stop_signal, grace_ms, max_line, capacity, stdin_bytes,
 * overflow
 * (block, drop_oldest, drop_newest, error; nil: drop_newest),
 * eof_wait_ms, rpc and inbox (jsonrpc, lsp). */
static int l_proc_spawn(lua_State *L) {
  msrt_proc_spec s;
  msrt_lproc_spec(L, &s);
  msrt_error err;
  msrt_procs *r = need_reg(L, &err);
  msrt_proc *p = r ? msrt_proc_spawn(r, &s, &err) : NULL;
  const char *warning = r ? msrt_procs_take_warning(r) : NULL;
  if (!p) {
    lua_pushnil(L);
    msrt_lua_push_error(L, &err);
    if (!warning) return 2;
    lua_pushstring(L, warning);
    return 3;
  }
  box *b = lua_newuserdata(L, sizeof *b);
  b->id = msrt_proc_id(p);
  luaL_getmetatable(L, PROC_META);
  lua_setmetatable(L, -2);
  lua_pushnumber(L, (lua_Number)b->id);
  if (!warning) return 2;
  lua_pushstring(L, warning);
  return 3;
}

/* The live process of a handle, or NULL once released. */
static msrt_proc *proc_of(lua_State *L) {
  box *b = luaL_checkudata(L, 1, PROC_META);
  return reg ? msrt_procs_find(reg, b->id) : NULL;
}

static int gone(lua_State *L) {
  return msrt_lua_fail(L, MSRT_E_CLOSED, "the process has exited");
}

static int l_proc_pid(lua_State *L) {
  msrt_proc *p = proc_of(L);
  if (!p || !msrt_proc_pid(p)) return 0;
  lua_pushinteger(L, msrt_proc_pid(p));
  return 1;
}

/* proc_rpc_id(box, reply) -> the JSON-RPC id of the request sent with
 * that reply subject, not yet answered; nothing otherwise. */
static int l_proc_rpc_id(lua_State *L) {
  size_t n;
  const char *r = luaL_checklstring(L, 2, &n);
  msrt_proc *p = proc_of(L);
  uint64_t id = p ? msrt_proc_rpc_id(p, r, n) : 0;
  if (!id) return 0;
  lua_pushnumber(L, (lua_Number)id);
  return 1;
}

static int l_proc_state(lua_State *L) {
  msrt_proc *p = proc_of(L);
  if (!p) return 0;
  lua_pushstring(L, msrt_proc_state_name(msrt_proc_get_state(p)));
  return 1;
}

/* With a wake id, a full `block` stdin registers the hub waker for it
 * instead of refusing: nil, a blocked err (a wake dispatch will come;
 * send again then). Room now, or a closed stdin: send. */
static bool send_blocks(msrt_rt *rt, msrt_proc *p, lua_Number wake_id) {
  msrt_gate *g = msrt_proc_gate(p);
  if (!rt || msrt_gate_policy(g) != MSRT_OVERFLOW_BLOCK || !msrt_gate_full(g))
    return false;
  void *w = msrt_rt_hub_waker(rt, (uint64_t)wake_id);
  if (!w) return false;
  /* the gate calls its wakers when it closes, before it is freed */
  if (msrt_gate_wait_room(g, msrt_inbox_wake, w) != MSRT_WAIT_PENDING) {
    msrt_inbox_unwake(w);
    return false;
  }
  msrt_gate_note(g, MSRT_GATE_BLOCKED);
  return true;
}

/* proc_send(box, encoded[, wake_id]) -> true | nil, err (blocked: see
 * send_blocks)
 * A send is bounded as a published message is: max_payload on the encoded
 * data (as bus.c's msrt_bus_make), max_line_bytes on the line (proc.c). */
static int l_proc_send(lua_State *L) {
  msrt_proc *p = proc_of(L);
  size_t n;
  const char *d = luaL_checklstring(L, 2, &n);
  if (!p) return gone(L);
  msrt_rt *rt = msrt_lua_rt_opt(L);
  if (rt && n > rt->cfg.max_payload)
    return msrt_lua_fail(L, MSRT_E_PAYLOAD_TOO_BIG, "process %s: data of %zu "
                         "bytes exceeds max_payload (%zu bytes)",
                         msrt_proc_name(p), n, rt->cfg.max_payload);
  if (!lua_isnoneornil(L, 3) && send_blocks(rt, p, luaL_checknumber(L, 3))) {
    return msrt_lua_blocked(L);
  }
  msrt_error err;
  if (msrt_proc_send_data(p, d, n, MSRT_ENV_PAYLOAD_BUFFER, &err) != MSRT_E_OK) {
    lua_pushnil(L);
    msrt_lua_push_error(L, &err);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* proc_signal(box, name) -> true | nil, err */
static int l_proc_signal(lua_State *L) {
  msrt_proc *p = proc_of(L);
  const char *name = luaL_checkstring(L, 2);
  int sig = msrt_signal_from_name(name);
  if (!sig) return luaL_argerror(L, 2, "unknown signal name");
  if (!p || msrt_proc_signal(p, sig) != 0) return gone(L);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_proc_stop(lua_State *L) {
  msrt_proc *p = proc_of(L);
  if (p) msrt_proc_stop(p, (long)luaL_optnumber(L, 2, -1));
  return 0;
}

static int l_proc_close_stdin(lua_State *L) {
  msrt_proc *p = proc_of(L);
  if (p) msrt_proc_close_stdin(p);
  return 0;
}

static int l_proc_stats(lua_State *L) {
  msrt_proc *p = proc_of(L);
  if (!p) return 0;
  msrt_proc_stats st;
  msrt_proc_get_stats(p, &st);
  lua_createtable(L, 0, 9);
  msrt_lua_set_num(L, "lines_out", (double)st.lines_out);
  msrt_lua_set_num(L, "bad_output", (double)st.bad_output);
  msrt_lua_set_num(L, "refused", (double)st.refused);
  msrt_lua_set_num(L, "stderr_lines", (double)st.stderr_lines);
  msrt_lua_set_num(L, "stdin_lines", (double)st.stdin_lines);
  msrt_lua_set_num(L, "stdin_dropped", (double)st.stdin_dropped);
  msrt_lua_set_num(L, "stdin_refused", (double)st.stdin_refused);
  msrt_lua_set_num(L, "stdin_blocked", (double)st.stdin_blocked);
  msrt_lua_set_num(L, "stdin_queued", (double)st.stdin_queued);
  msrt_lua_set_num(L, "stdin_queued_bytes", (double)st.stdin_queued_bytes);
  return 1;
}

/* proc_release(box): the handle lets go (a running child is stopped). */
static int l_proc_release(lua_State *L) {
  msrt_proc *p = proc_of(L);
  if (!p) return 0;
  msrt_rt *rt = msrt_lua_rt_opt(L);
  msrt_bus_proc_release(rt ? rt->bus : NULL, p);
  msrt_proc_release(p);
  return 0;
}

/* proc_subscribe(box, pattern, queue) -> sub_id | nil, err */
static int l_proc_subscribe(lua_State *L) {
  msrt_proc *p = proc_of(L);
  size_t plen, qlen = 0;
  const char *pat = luaL_checklstring(L, 2, &plen);
  const char *q = luaL_optlstring(L, 3, NULL, &qlen);
  msrt_rt *rt = msrt_lua_rt_opt(L);
  if (!p || !rt) return gone(L);
  uint64_t sid;
  msrt_error err;
  if (msrt_bus_subscribe(rt->bus, pat, plen, q, qlen,
                         msrt_ep_gate(msrt_proc_gate(p)), &sid,
                         &err) != MSRT_E_OK) {
    lua_pushnil(L);
    msrt_lua_push_error(L, &err);
    return 2;
  }
  lua_pushnumber(L, (lua_Number)sid);
  return 1;
}

static int l_proc_set_events(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_pushlightuserdata(L, (void *)&EVENT_KEY);
  lua_pushvalue(L, 1);
  lua_rawset(L, LUA_REGISTRYINDEX);
  return 0;
}

/* proc_shutdown(timeout_ms): stop every child (blocking up to timeout_ms,
 * then SIGKILL), exit events for each, free the registry. Spawns are
 * refused afterwards. */
static int l_proc_shutdown(lua_State *L) {
  long ms = (long)luaL_optnumber(L, 1, 5000);
  closed = 1;
  if (reg) msrt_procs_free(reg, ms);
  reg = NULL;
  return 0;
}

static int l_proc_count(lua_State *L) {
  lua_pushinteger(L, reg ? (lua_Integer)msrt_procs_count(reg) : 0);
  return 1;
}

static int box_gc(lua_State *L) { return l_proc_release(L); }

void msrt_lua_open_proc(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"proc_spawn", l_proc_spawn}, {"proc_pid", l_proc_pid},
    {"proc_state", l_proc_state},
    {"proc_rpc_id", l_proc_rpc_id}, {"proc_send", l_proc_send},
    {"proc_signal", l_proc_signal}, {"proc_stop", l_proc_stop},
    {"proc_close_stdin", l_proc_close_stdin}, {"proc_stats", l_proc_stats},
    {"proc_release", l_proc_release}, {"proc_subscribe", l_proc_subscribe},
    {"proc_set_events", l_proc_set_events},
    {"proc_shutdown", l_proc_shutdown}, {"proc_count", l_proc_count},
    {NULL, NULL}};
  if (luaL_newmetatable(L, PROC_META)) {
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  luaL_register(L, NULL, fns);
  /* JSON null as it reaches Lua (a NULL lightuserdata, as cjson.null) */
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "json_null");
}
