#include "lua/host.h"

#include <lauxlib.h>
#include <lualib.h>
#include <luv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Log lines queued for stderr at most (core/logsink.h), and how long the
 * exit waits for a slow reader of stderr to take them. */
#define LOG_BUFFER_BYTES (1u << 20)
#define LOG_EXIT_MS 2000

static const char HOST_KEY = 'h'; /* registry key: its address */
static const char ERROR_HOOK_KEY = 'e'; /* registry: core.set_error_hook's fn */

int msrt_log_level_from_name(const char *name) {
  static const char *const names[] = {"debug", "info", "warn", "error"};
  for (int i = 0; i < 4; i++)
    if (strcmp(name, names[i]) == 0) return i;
  return -1;
}

msrt_host *msrt_host_get(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&HOST_KEY);
  lua_rawget(L, LUA_REGISTRYINDEX);
  msrt_host *h = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return h;
}

/* The sink of the one host of this process, flushed (bounded) at exit
 * too: os.exit leaves without msrt_host_close. */
static msrt_logsink *exit_sink;
static void flush_at_exit(void) {
  if (exit_sink) msrt_logsink_flush(exit_sink, LOG_EXIT_MS);
}

void msrt_host_log(msrt_host *h, const char *text, size_t len) {
  if (h && h->log) {
    msrt_logsink_write(h->log, text, len);
    return;
  }
  fwrite(text, 1, len, stderr);
  if (!len || text[len - 1] != '\n') fputc('\n', stderr);
  fflush(stderr);
}

void msrt_host_report(msrt_host *h, const char *what, const char *msg) {
  char *line = NULL;
  int n = what && *what ? asprintf(&line, "msrt-lua: %s: %s", what, msg)
                        : asprintf(&line, "msrt-lua: %s", msg);
  if (n >= 0) msrt_host_log(h, line, (size_t)n);
  free(line);
  if (h) h->errors++;
}

int msrt_host_set_error_hook(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_pushlightuserdata(L, (void *)&ERROR_HOOK_KEY);
  lua_insert(L, 1);
  lua_rawset(L, LUA_REGISTRYINDEX);
  return 0;
}

/* The hook runs as a coroutine of its own, as every hub callback does; it
 * takes the error when it returns true (an error or a yield in it: not). */
static int hook_takes(lua_State *L, const char *what, const char *msg) {
  lua_pushlightuserdata(L, (void *)&ERROR_HOOK_KEY);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (!lua_isfunction(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  lua_State *co = lua_newthread(L);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX); /* not on L: see msrt_host_call */
  lua_xmove(L, co, 1);
  lua_pushstring(co, what ? what : "");
  lua_pushstring(co, msg);
  int taken = lua_resume(co, 2) == 0 && lua_toboolean(co, -1);
  luaL_unref(L, LUA_REGISTRYINDEX, ref);
  return taken;
}

void msrt_host_raise(lua_State *L, const char *what, const char *msg) {
  if (!hook_takes(L, what, msg)) msrt_host_report(msrt_host_get(L), what, msg);
}

/* An uncaught error of coroutine co, reported as luajit's lua.c does: a
 * message (or its __tostring) with a traceback, "(error object is not a
 * string)" for other values, and nothing but the count for nil (busted
 * ends a failing run with error() after printing its report). */
static void report_error(lua_State *L, lua_State *co, const char *what) {
  msrt_host *h = msrt_host_get(L);
  if (lua_isnil(co, -1)) {
    if (h) h->errors++;
    return;
  }
  const char *msg = lua_tostring(co, -1);
  if (!msg && luaL_callmeta(co, -1, "__tostring")) msg = lua_tostring(co, -1);
  if (!msg) {
    msrt_host_raise(L, what, "(error object is not a string)");
    return;
  }
  luaL_traceback(L, co, msg, 0);
  msrt_host_raise(L, what, lua_tostring(L, -1));
  lua_pop(L, 1);
}

void msrt_host_report_uncaught(lua_State *L, lua_State *co, const char *what) {
  report_error(L, co, what);
}

int msrt_host_resume(lua_State *L, lua_State *co, int nargs, int nres,
                     const char *what) {
  int rc = lua_resume(co, nargs);
  int pushed = 0;
  if (rc == 0) {
    int n = lua_gettop(co);
    if (nres != LUA_MULTRET && n > nres) lua_settop(co, nres), n = nres;
    luaL_checkstack(L, n + 1, "too many results");
    lua_xmove(co, L, n);
    pushed = n;
  } else if (rc != LUA_YIELD) {
    report_error(L, co, what);
  }
  /* yielded: whoever it waits on resumes it (and anchors it) */
  for (; nres != LUA_MULTRET && pushed < nres; pushed++) lua_pushnil(L);
  return rc;
}

/* A coroutine for msrt_host_call, pushed on L, and its registry ref: an
 * idle one that finished its last call, or a new one. Reusing them saves
 * making and collecting a thread (its stack, its GC object) per callback
 * (lua_resume runs a finished thread again with a new function, the C
 * API's documented reuse: status 0 and an empty stack). */
static int thread_take(lua_State *L, msrt_host *h) {
  if (h && h->nthreads > 0) {
    int ref = h->threads[--h->nthreads];
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    return ref;
  }
  lua_newthread(L);
  lua_pushvalue(L, -1);
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

int msrt_host_call(lua_State *L, int nargs, int nres, const char *what) {
  msrt_host *h = msrt_host_get(L);
  /* The running coroutine is anchored in the registry, never only on L's
   * stack: L is luv's state, and luv 1.44 clears that whole stack from
   * inside callbacks (luv_thread_arg_clear's lua_pop(L, -1) after a work
   * callback), which would free the coroutine while it runs. */
  int ref = thread_take(L, h);
  lua_State *co = lua_tothread(L, -1);
  lua_pop(L, 1);
  lua_xmove(L, co, nargs + 1);
  int rc = msrt_host_resume(L, co, nargs, nres, what);
  if (rc == 0 && h && h->nthreads < MSRT_HOST_THREADS) {
    lua_settop(co, 0);
    h->threads[h->nthreads++] = ref;
  } else {
    luaL_unref(L, LUA_REGISTRYINDEX, ref); /* waiting: its waker holds it */
  }
  return rc;
}

msrt_code msrt_host_run(msrt_host *h, uv_run_mode mode, int *more) {
  if (msrt_hub_running(h->hub)) return MSRT_E_INVALID_ARG;
  luv_ctx_t *ctx = luv_context(h->L);
  int saved = ctx->mode;
  ctx->mode = (int)mode; /* uv.loop_mode() reads it, as under luv_run */
  msrt_code rc = msrt_hub_run_mode(h->hub, mode, more);
  ctx->mode = saved;
  return rc;
}

/* luv's callback hook: every luv callback becomes a coroutine on the hub,
 * and its errors go to the runtime's error path instead of exiting. */
static int luv_callback(lua_State *L, int nargs, int nres, int flags) {
  (void)flags;
  int rc = msrt_host_call(L, nargs, nres, "error in callback");
  if (rc && rc != LUA_YIELD) return -rc;
  return nres == LUA_MULTRET ? 0 : nres;
}

static const char *lua_dir(void) {
  const char *env = getenv("MSRT_LUA_DIR");
  if (env && *env) return env;
  static char buf[4096];
  char exe[4000];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    snprintf(buf, sizeof buf, "%s/../share/msrt/lua/msrt/init.lua", exe);
    if (access(buf, R_OK) == 0) {
      snprintf(buf, sizeof buf, "%s/../share/msrt/lua", exe);
      return buf;
    }
  }
  if (access(MSRT_SOURCE_LUA_DIR "/msrt/init.lua", R_OK) == 0)
    return MSRT_SOURCE_LUA_DIR;
  return MSRT_INSTALL_LUA_DIR;
}

static void set_path(lua_State *L) {
  const char *dir = lua_dir();
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", dir, dir,
                  lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 1);
  lua_pushstring(L, dir);
  lua_setfield(L, -2, "msrt_dir"); /* package.msrt_dir, for the Lua half */
  lua_pop(L, 1);
}

static void preload(lua_State *L, const char *name, lua_CFunction fn) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, fn);
  lua_setfield(L, -2, name);
  lua_pop(L, 2);
}

/* luv is opened eagerly so that it is bound to the hub loop before any
 * script could make it create its own. */
static int open_luv(lua_State *L) {
  luv_set_loop(L, msrt_hub_loop(msrt_host_get(L)->hub));
  luv_set_callback(L, luv_callback);
  return luaopen_luv(L);
}

msrt_code msrt_host_init(msrt_host *h) {
  msrt_error err;
  h->log = msrt_logsink_new(2, LOG_BUFFER_BYTES, &err);
  if (!h->log) fprintf(stderr, "msrt-lua: %s (logging directly)\n", err.message);
  if (h->log && !exit_sink) {
    exit_sink = h->log;
    atexit(flush_at_exit);
  }
  h->hub = msrt_hub_new(&err);
  if (!h->hub) {
    fprintf(stderr, "msrt-lua: %s\n", err.message);
    return MSRT_E_NOMEM;
  }
  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "msrt-lua: cannot create a Lua state\n");
    return MSRT_E_NOMEM;
  }
  h->L = L;
  lua_pushlightuserdata(L, (void *)&HOST_KEY);
  lua_pushlightuserdata(L, h);
  lua_rawset(L, LUA_REGISTRYINDEX);
  luaL_openlibs(L);
  set_path(L);
  preload(L, "msrt.core", luaopen_msrt_core);
  lua_pushcfunction(L, open_luv);
  lua_call(L, 0, 1);
  msrt_lua_patch_luv(L);
  msrt_lua_install_shutdown(L);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "loaded");
  lua_pushvalue(L, -3);
  lua_setfield(L, -2, "luv");
  lua_pop(L, 3);
  return MSRT_E_OK;
}

int msrt_host_close(msrt_host *h) {
  lua_State *L = h->L;
  if (!msrt_hub_stopping(h->hub))
    msrt_hub_shutdown(h->hub, "normal", msrt_hub_status(h->hub));
  msrt_hub_close_all(h->hub);
  int status = msrt_hub_status(h->hub);
  if (status == 0 && h->errors) status = 1;
  lua_close(L);
  h->L = NULL;
  msrt_hub_close_all(h->hub);
  if (msrt_hub_free(h->hub) != 0)
    fprintf(stderr, "msrt-lua: warning: handles still open at exit\n");
  h->hub = NULL;
  if (exit_sink == h->log) exit_sink = NULL;
  msrt_logsink_free(h->log, LOG_EXIT_MS); /* a stalled reader: left */
  h->log = NULL;
  return status;
}
