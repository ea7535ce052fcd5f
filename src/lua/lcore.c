/* msrt.core: the C side of the `msrt` Lua module (lua/msrt/init.lua is the
 * public face; these functions are internal and may change). Hub thread. */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>
#include <uv.h>
#include <lhandle.h>

#include "hub/timer.h"

#include "lua/host.h"
#include "lua/lerror.h"
#include "lua/lhealth.h"
#include "lua/lpolicy.h"
#include "lua/lproc.h"
#include "lua/lrt.h"
#include "lua/lsuper.h"
#include "lua/lsys.h"

static const char HOOK_KEY = 's'; /* registry: the Lua shutdown hook */

static msrt_host *host(lua_State *L) { return msrt_host_get(L); }

/* Push luv's userdata of every open luv handle into the table on top. */
static void collect_luv(uv_handle_t *handle, void *arg) {
  lua_State *L = arg;
  if (uv_is_closing(handle) || !handle->data ||
      *(unsigned *)handle->data == MSRT_HANDLE_MAGIC)
    return;
  luv_handle_t *d = handle->data;
  lua_rawgeti(L, LUA_REGISTRYINDEX, d->ref);
  if (lua_isuserdata(L, -1)) lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
  else lua_pop(L, 1);
}

/* Close luv's handles through luv, so their close callbacks run and their
 * references are dropped before the Lua state closes. (uv.walk itself
 * would assert on the hub's own handles.) */
static void close_luv_handles(lua_State *L) {
  lua_newtable(L);
  uv_walk(msrt_hub_loop(host(L)->hub), collect_luv, L);
  for (int i = 1; i <= (int)lua_objlen(L, -1); i++) {
    lua_rawgeti(L, -1, i);
    lua_getfield(L, -1, "close");
    lua_insert(L, -2);
    if (lua_pcall(L, 1, 0, 0)) {
      msrt_host_report(host(L), "closing handles", lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
}

/* The hub calls this when shutdown begins: the Lua hook, then luv. A
 * hook returning true goes on on the loop (it stops the supervision trees
 * first) and ends with core.shutdown_done(); reason NULL (nil): finish at
 * once. */
static bool on_shutdown(msrt_hub *hub, const char *reason, void *ud) {
  (void)hub;
  lua_State *L = ud;
  bool held = false;
  lua_pushlightuserdata(L, (void *)&HOOK_KEY);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_isfunction(L, -1)) {
    if (reason) lua_pushstring(L, reason);
    else lua_pushnil(L);
    msrt_host_call(L, 1, 1, "error in shutdown hook");
    held = lua_toboolean(L, -1);
    lua_pop(L, 1);
  } else {
    lua_pop(L, 1);
  }
  if (!held) close_luv_handles(L);
  return held;
}

/* shutdown_done(): the Lua hook's part on the loop has ended: luv's
 * handles close and the loop stops. */
static int l_shutdown_done(lua_State *L) {
  close_luv_handles(L);
  msrt_hub_shutdown_done(host(L)->hub);
  return 0;
}

/* SIGHUP that no watcher takes (msrt.watch starts one): logged as msrt.log
 * would, nothing reloaded, the host goes on. */
static void on_hup(msrt_hub *hub, void *ud) {
  (void)hub;
  msrt_host *h = ud;
  static const char msg[] = "SIGHUP: nothing to reload (no watched policy files)";
  char line[160];
  int n;
  if (h->log_level > MSRT_LOG_INFO) return;
  if (h->log_format && strcmp(h->log_format, "json") == 0) {
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    n = snprintf(line, sizeof line, "{\"ts\":%.3f,\"level\":\"info\",\"msg\":\"%s\"}",
                 (double)tv.tv_sec + tv.tv_usec / 1e6, msg);
  } else {
    n = snprintf(line, sizeof line, "INFO %s", msg);
  }
  msrt_host_log(h, line, (size_t)n);
}

void msrt_lua_install_shutdown(lua_State *L) {
  msrt_hub_on_shutdown(host(L)->hub, on_shutdown, L);
  msrt_hub_on_hup(host(L)->hub, on_hup, host(L));
}

/* on_shutdown(fn(reason)): the one Lua hook (msrt's init.lua owns it). */
static int l_on_shutdown(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_pushlightuserdata(L, (void *)&HOOK_KEY);
  lua_pushvalue(L, 1);
  lua_rawset(L, LUA_REGISTRYINDEX);
  return 0;
}

/* luv's uv.run([mode]) replaced: libuv is never re-entered. While the hub
 * runs it returns false at once; otherwise it runs the hub's loop. */
static int l_uv_run(lua_State *L) {
  static const char *const modes[] = {"default", "once", "nowait", NULL};
  static const uv_run_mode values[] = {UV_RUN_DEFAULT, UV_RUN_ONCE,
                                       UV_RUN_NOWAIT};
  int m = luaL_checkoption(L, 1, "default", modes);
  int more = 0;
  if (msrt_host_run(host(L), values[m], &more) == MSRT_E_OK)
    host(L)->ran_loop = 1; /* the script owns the loop (main.c) */
  lua_pushboolean(L, more);
  return 1;
}

/* luv's uv.walk(fn) replaced: luv's own asserts on handles that are not
 * luv's (the hub's), so only luv's handles are handed to fn. */
static int l_uv_walk(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_newtable(L);
  uv_walk(msrt_hub_loop(host(L)->hub), collect_luv, L);
  for (int i = 1; i <= (int)lua_objlen(L, 2); i++) {
    lua_pushvalue(L, 1);
    lua_rawgeti(L, 2, i);
    lua_call(L, 1, 0);
  }
  return 0;
}

static void count_luv(uv_handle_t *handle, void *arg) {
  if (handle->data && *(unsigned *)handle->data != MSRT_HANDLE_MAGIC)
    ++*(int *)arg;
}

/* luv's uv.loop_close() replaced: the loop is the hub's and stays open for
 * it, so this answers as libuv would for a loop holding only the script's
 * handles: 0 when none of luv's is left (closing ones count until their
 * close callback ran), else nil, "EBUSY: ...", "EBUSY" as luv reports. */
static int l_uv_loop_close(lua_State *L) {
  int open = 0;
  uv_walk(msrt_hub_loop(host(L)->hub), count_luv, &open);
  if (open) {
    lua_pushnil(L);
    lua_pushfstring(L, "EBUSY: %s", uv_strerror(UV_EBUSY));
    lua_pushliteral(L, "EBUSY");
    return 3;
  }
  lua_pushinteger(L, 0);
  return 1;
}

void msrt_lua_patch_luv(lua_State *L) {
  lua_pushcfunction(L, l_uv_loop_close);
  lua_setfield(L, -2, "loop_close");
  lua_pushcfunction(L, l_uv_run);
  lua_setfield(L, -2, "run");
  lua_pushcfunction(L, l_uv_walk);
  lua_setfield(L, -2, "walk");
}

/* stop(reason, status) */
static int l_stop(lua_State *L) {
  const char *reason = luaL_optstring(L, 1, "normal");
  int status = (int)luaL_optinteger(L, 2, 0);
  msrt_hub_shutdown(host(L)->hub, reason, status);
  return 0;
}

/* run() -> status: runs the hub loop unless it is already running (then
 * returns nil, err invalid_arg: libuv must not be re-entered). */
static int l_run(lua_State *L) {
  msrt_host *h = host(L);
  if (msrt_host_run(h, UV_RUN_DEFAULT, NULL) != MSRT_E_OK)
    return msrt_lua_fail(L, MSRT_E_INVALID_ARG, "the hub loop is already "
                         "running (msrt.run from inside a callback)");
  lua_pushinteger(L, msrt_hub_status(h->hub));
  return 1;
}

/* run_once() -> whether more work is pending: one turn of the loop for
 * msrt's own waits before the hub runs (uv.run("once") would count as the
 * script running the loop itself). false while the loop already runs. */
static int l_run_once(lua_State *L) {
  int more = 0;
  msrt_host_run(host(L), UV_RUN_ONCE, &more);
  lua_pushboolean(L, more);
  return 1;
}

static int l_running(lua_State *L) {
  lua_pushboolean(L, msrt_hub_running(host(L)->hub));
  return 1;
}

static int l_stopping(lua_State *L) {
  msrt_hub *hub = host(L)->hub;
  if (!msrt_hub_stopping(hub)) return 0;
  lua_pushstring(L, msrt_hub_reason(hub));
  return 1;
}

/* machine() -> {cpus = n, memory = bytes} */
static int l_machine(lua_State *L) {
  lua_createtable(L, 0, 2);
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  lua_pushinteger(L, cpus > 0 ? cpus : 1);
  lua_setfield(L, -2, "cpus");
  lua_pushnumber(L, (lua_Number)uv_get_total_memory());
  lua_setfield(L, -2, "memory");
  return 1;
}

/* threads() -> number of threads in this process (/proc/self/task). */
static int l_threads(lua_State *L) {
  DIR *d = opendir("/proc/self/task");
  if (!d) return msrt_lua_fail(L, MSRT_E_IO, "cannot read /proc/self/task");
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.') n++;
  closedir(d);
  lua_pushinteger(L, n);
  return 1;
}

/* set_blocking_threads(n): libuv reads UV_THREADPOOL_SIZE once, when the
 * pool first starts; later calls have no effect on a started pool. */
static int l_set_blocking_threads(lua_State *L) {
  int n = (int)luaL_checkinteger(L, 1);
  char buf[16];
  snprintf(buf, sizeof buf, "%d", n);
  setenv("UV_THREADPOOL_SIZE", buf, 1);
  return 0;
}

/* log_line(text): one line to stderr through the host's log sink (never
 * blocks the hub; msrt_host_log). */
static int l_log_line(lua_State *L) {
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  msrt_host_log(host(L), text, len);
  return 0;
}

/* report(what, message): the runtime's error path. */
static int l_report(lua_State *L) {
  msrt_host_raise(L, luaL_checkstring(L, 1), luaL_checkstring(L, 2));
  return 0;
}

/* options() -> {profile =, workers =, log_level =, watch = {dir...},
 * metrics =, ctl =, log_format =, nats =} from the command line */
static int l_options(lua_State *L) {
  msrt_host *h = host(L);
  static const char *const levels[] = {"debug", "info", "warn", "error"};
  lua_createtable(L, 0, 3);
  if (h->profile) {
    lua_pushstring(L, h->profile);
    lua_setfield(L, -2, "profile");
  }
  if (h->workers > 0) {
    lua_pushinteger(L, h->workers);
    lua_setfield(L, -2, "workers");
  }
  lua_pushstring(L, levels[h->log_level]);
  lua_setfield(L, -2, "log_level");
  static const char *const strs[] = {"metrics", "ctl", "log_format", "nats",
                                     "listen"};
  const char *vals[] = {h->metrics, h->ctl, h->log_format, h->nats,
                        h->listen};
  for (int i = 0; i < 5; i++) {
    if (!vals[i]) continue;
    lua_pushstring(L, vals[i]);
    lua_setfield(L, -2, strs[i]);
  }
  if (h->nwatch) {
    lua_createtable(L, h->nwatch, 0);
    for (int i = 0; i < h->nwatch; i++) {
      lua_pushstring(L, h->watch[i]);
      lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "watch");
  }
  return 1;
}

static int l_set_log_level(lua_State *L) {
  int level = msrt_log_level_from_name(luaL_checkstring(L, 1));
  if (level < 0) return luaL_argerror(L, 1, "debug, info, warn or error");
  host(L)->log_level = level;
  return 0;
}

/* resume(co, what, ...) -> true when co finished or yielded again, false
 * after its error was reported as an uncaught one (the runtime's error
 * path, luajit's lua.c rules: msrt_host_resume). */
static int l_resume(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  luaL_argcheck(L, co && (lua_status(co) == LUA_YIELD ||
                          (lua_status(co) == 0 && lua_gettop(co) > 0)),
                1, "suspended coroutine expected");
  const char *what = luaL_optstring(L, 2, NULL);
  int n = lua_gettop(L) > 2 ? lua_gettop(L) - 2 : 0;
  lua_xmove(L, co, n);
  int rc = msrt_host_resume(L, co, n, 0, what);
  lua_pushboolean(L, rc == 0 || rc == LUA_YIELD);
  return 1;
}

/* uncaught(co, what, err): report err, which ended coroutine co (as
 * coroutine.resume gave it), as resume does an uncaught error. For Lua
 * that resumes with coroutine.resume, which LuaJIT runs without a call
 * through the C API. */
static int l_uncaught(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  luaL_argcheck(L, co != NULL, 1, "coroutine expected");
  const char *what = luaL_optstring(L, 2, NULL);
  lua_settop(L, 3);
  lua_xmove(L, co, 1);
  msrt_host_report_uncaught(L, co, what);
  return 0;
}

/* exe() -> the path of this msrt-lua executable */
static int l_exe(lua_State *L) {
  char buf[4096];
  size_t n = sizeof buf;
  if (uv_exepath(buf, &n) != 0) return msrt_lua_fail(L, MSRT_E_IO, "no exe path");
  lua_pushlstring(L, buf, n);
  return 1;
}

/* now_ms() -> monotonic milliseconds (fractional) */
static int l_now_ms(lua_State *L) {
  lua_pushnumber(L, (lua_Number)uv_hrtime() / 1e6);
  return 1;
}

/* timeout_ms(ms) -> the timeout for a luv timer's start so that its
 * callback runs no earlier than ms milliseconds from now, however stale
 * the loop's cached time is (hub/timer.h) */
static int l_timeout_ms(lua_State *L) {
  uint64_t due = msrt_timer_due(luaL_checknumber(L, 1));
  uv_loop_t *loop = msrt_hub_loop(host(L)->hub);
  lua_pushnumber(L, (lua_Number)msrt_timer_timeout(loop, due));
  return 1;
}

int luaopen_msrt_core(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"on_shutdown", l_on_shutdown}, {"shutdown_done", l_shutdown_done},
    {"stop", l_stop}, {"run", l_run}, {"run_once", l_run_once},
    {"running", l_running}, {"stopping", l_stopping},
    {"machine", l_machine}, {"threads", l_threads},
    {"set_blocking_threads", l_set_blocking_threads}, {"report", l_report},
    {"set_error_hook", msrt_host_set_error_hook},
    {"options", l_options}, {"set_log_level", l_set_log_level},
    {"now_ms", l_now_ms}, {"timeout_ms", l_timeout_ms}, {"exe", l_exe},
    {"resume", l_resume}, {"uncaught", l_uncaught}, {"log_line", l_log_line},
    {NULL, NULL}};
  lua_newtable(L);
  luaL_register(L, NULL, fns);
  msrt_lua_open_overflow(L);
  msrt_lua_open_errors(L);
  msrt_lua_open_rt(L);
  msrt_lua_open_actor(L);
  msrt_lua_open_bus(L);
  msrt_lua_open_metrics(L);
  msrt_lua_open_routes(L);
  msrt_lua_open_queue(L);
  msrt_lua_open_bridge(L);
  msrt_lua_open_jsq(L);
  msrt_lua_open_nats(L);
  msrt_lua_open_proc(L);
  msrt_lua_open_json(L);
  msrt_lua_open_super(L);
  msrt_lua_open_health(L);
  msrt_lua_open_sys(L);
  msrt_lua_open_policy(L);
  msrt_lua_open_web(L);
  msrt_lua_open_http(L);
  return 1;
}
