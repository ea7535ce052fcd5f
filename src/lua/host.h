/* The host: the main Lua state on the hub thread, with luv sharing the
 * hub's loop and every hub callback run as a coroutine.
 *
 * Thread-safety: hub (main) thread only.
 */
#ifndef MSRT_LUA_HOST_H
#define MSRT_LUA_HOST_H

#include <lauxlib.h>
#include <lua.h>

#include "core/logsink.h"
#include "hub/hub.h"
#include "sched/sched.h"

/* Idle coroutines msrt_host_call keeps for the next callbacks. */
#define MSRT_HOST_THREADS 64

typedef struct msrt_host {
  lua_State *L;
  msrt_hub *hub;
  int errors;        /* uncaught errors reported from callbacks */
  int log_level;     /* MSRT_LOG_* */
  const char *profile; /* --profile NAME|FILE, or NULL */
  int workers;       /* --workers N, or 0 */
  const char *watch[16]; /* --watch DIR, in order */
  int nwatch;
  const char *metrics;    /* --metrics HOST:PORT, or NULL */
  const char *ctl;        /* --ctl PATH|auto, or NULL */
  const char *nats;       /* --nats URL, or NULL */
  const char *listen;     /* --listen nats=ADDR[,auth=FILE], or NULL */
  const char *log_format; /* --log-format text|json, or NULL (text) */
  int ran_loop;           /* the script called luv's uv.run() itself */
  msrt_logsink *log;      /* stderr for log lines and reports, or NULL */
  struct msrt_rt *rt;     /* the runtime once started (lua/rt.h), or NULL */
  int threads[MSRT_HOST_THREADS]; /* registry refs of idle callback threads */
  int nthreads;
} msrt_host;

enum { MSRT_LOG_DEBUG, MSRT_LOG_INFO, MSRT_LOG_WARN, MSRT_LOG_ERROR };

/* Level by name ("debug", "info", "warn", "error"); -1 when unknown. */
int msrt_log_level_from_name(const char *name);

/* Make the hub, the Lua state, open the standard libraries, set
 * package.path to find the project's lua/ directory, preload "msrt.core"
 * and "luv" (sharing the hub loop). Returns MSRT_E_OK, or MSRT_E_NOMEM
 * (no hub, no Lua state) with a message on stderr. */
msrt_code msrt_host_init(msrt_host *h);

/* The host of a Lua state made by msrt_host_init. */
msrt_host *msrt_host_get(lua_State *L);

/* Report the uncaught error of coroutine co, its error value at co's top,
 * as msrt_host_resume does (what names the path, "error in callback"). */
void msrt_host_report_uncaught(lua_State *L, lua_State *co, const char *what);

/* Run the function at the top of L's stack below its nargs arguments as a
 * coroutine. Returns 0 when it finished, LUA_YIELD when it yielded (it is
 * then resumed by whatever it waits on), or the lua_resume error code after
 * reporting the error as luajit's lua.c would (message and traceback
 * through msrt_host_report; a nil error is only counted). On return the function
 * and its arguments are gone and nres results are pushed (nil-padded;
 * LUA_MULTRET pushes all of a finished coroutine's results). A coroutine
 * that finished is kept (up to MSRT_HOST_THREADS) and runs a later call:
 * a callback that keeps coroutine.running() past its end may find it
 * running another one. */
int msrt_host_call(lua_State *L, int nargs, int nres, const char *what);

/* Resume the suspended coroutine co with the nargs values on its stack,
 * as msrt_host_call runs a function: returns 0, LUA_YIELD or the error
 * code (reported); nres results are pushed on L. The caller keeps co
 * anchored meanwhile. */
int msrt_host_resume(lua_State *L, lua_State *co, int nargs, int nres,
                     const char *what);

/* Run the hub's loop in a libuv run mode as luv's uv.run would: luv's
 * uv.loop_mode() names the mode meanwhile; *more (more may be NULL) gets
 * whether more work is pending. Returns MSRT_E_OK, or MSRT_E_INVALID_ARG
 * when the loop already runs (libuv is never re-entered). */
msrt_code msrt_host_run(msrt_host *h, uv_run_mode mode, int *more);

/* One log line (a '\n' is added when it lacks one) to stderr through the
 * host's log sink: never blocks on a slow reader; a line that finds the
 * 1 MiB buffer full is dropped and counted (core/logsink.h). Queued lines
 * are written, within 2 s, at msrt_host_close and at exit. */
void msrt_host_log(msrt_host *h, const char *text, size_t len);

/* The runtime's error path: "msrt-lua: <what>: <msg>" on stderr (through
 * msrt_host_log) and one more uncaught error counted. */
void msrt_host_report(msrt_host *h, const char *what, const char *msg);

/* An uncaught error of Lua code run by the host (msrt_host_call's, and
 * core.report's): offered first to the error hook, and reported through
 * msrt_host_report unless the hook took it. */
void msrt_host_raise(lua_State *L, const char *what, const char *msg);

/* core.set_error_hook(fn | nil): fn(what, message) is offered every error
 * msrt_host_raise gets (message with its traceback); when it returns true
 * the error is its own: neither printed nor counted. For test drivers
 * that fail the test during which a callback raised (spec/support.lua);
 * nil removes it. fn must not yield. A lua_CFunction. */
int msrt_host_set_error_hook(lua_State *L);

/* Shut down (hook, handles closed, loop drained), close the Lua state,
 * free the hub. Returns the exit status. */
int msrt_host_close(msrt_host *h);

int luaopen_msrt_core(lua_State *L);

/* Replace uv.run in the luv table at the top of the stack (lcore.c). */
void msrt_lua_patch_luv(lua_State *L);

/* Register the hub's shutdown hook (the Lua hook, then close luv handles)
 * and its SIGHUP hook (logged, nothing reloaded). */
void msrt_lua_install_shutdown(lua_State *L);

/* t[k] = v for the table t at the top of the stack (counters read out as
 * Lua numbers: exact up to 2^53). */
static inline void msrt_lua_set_num(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

/* The priority argument at idx: nil or none is MSRT_PRIORITY_DEFAULT; an
 * integer 1..10 is itself; any other number (0, negative, fractional, NaN,
 * inf, 1e300) is 0, which msrt_bus_make refuses (invalid_arg), so a bad
 * value is never converted into a valid one. Raises for a non-number. */
static inline int msrt_lua_priority(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return MSRT_PRIORITY_DEFAULT;
  lua_Number n = luaL_checknumber(L, idx);
  if (!(n >= MSRT_PRIORITY_HIGHEST && n <= MSRT_PRIORITY_LOWEST) ||
      n != (lua_Number)(int)n)
    return 0;
  return (int)n;
}

#endif
