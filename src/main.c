/* msrt-lua: a drop-in for the lua/luajit command with the msrt runtime
 * preloaded. `msrt-lua [options] [script [args]]`; see usage() below. */
#include <lauxlib.h>
#include <lualib.h>
#include <luajit.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "lua/host.h"

#define MSRT_VERSION "0.1.0"

static msrt_host host; /* static: reachable at os.exit, so no leak report */

static void usage(FILE *to) {
  fputs(
    "usage: msrt-lua [options] [script [args]]\n"
    "  -e chunk          run the string chunk\n"
    "  -l module         require module (as a global of the same name)\n"
    "  -i                interactive mode after the script\n"
    "  -j cmd            LuaJIT control command (-jv, -joff, -jdump=...)\n"
    "  -O[opt]           LuaJIT optimisation flags (-O3, -Ohotloop=10)\n"
    "  -b ...            save or list bytecode, as luajit -b (the rest is its)\n"
    "  -v, --version     print version information\n"
    "  -                 run standard input\n"
    "  --                stop handling options\n"
    "  --profile NAME|FILE  tuning profile (default: $MSRT_PROFILE or default)\n"
    "  --workers N       worker threads (overrides the profile)\n"
    "  --log-level L     debug, info, warn or error (default info)\n"
    "  --watch DIR       reload policy files under DIR when they change\n"
    "  --nats URL        join the NATS server at URL (msrt.nats{url = URL})\n"
    "  --metrics H:P     serve Prometheus /metrics on H:P (e.g. 127.0.0.1:9464)\n"
    "  --ctl PATH|auto   serve the control socket (see below); auto: a private\n"
    "                    path, printed\n"
    "  --log-format F    text (default) or json: one line per event\n"
    "  --listen KIND=H:P[,KIND=H:P...][,auth=FILE]  serve nats, websocket or\n"
    "                    http on H:P (msrt.listen{KIND = H:P})\n"
    "  --check FILE...   compile and validate policy files, then exit\n"
    "  -h, --help        this text\n"
    "usage: msrt-lua ctl SOCKET status|tree|metrics|reload|stop [PATH]|\n"
    "                   start PATH|restart PATH|queues|queue NAME peek N|\n"
    "                   queue NAME purge|help   (msrt-lua ctl help)\n"
    "usage: msrt-lua mcp serve POLICY.lua   the fleet as an MCP server on stdio\n",
    to);
}

static int bad_usage(const char *fmt, const char *what) {
  fprintf(stderr, "msrt-lua: ");
  fprintf(stderr, fmt, what);
  fputs("\nusage: msrt-lua [options] [script [args]] (msrt-lua --help lists "
        "them)\n", stderr);
  return 2;
}

static void print_version(void) {
  printf("msrt-lua %s (%s; libuv %s)\n", MSRT_VERSION, LUAJIT_VERSION,
         uv_version_string());
}

static int suspended; /* a chunk yielded: the loop must run to finish it */

/* luajit's front end stops a running chunk on SIGINT with "interrupted!"
 * and a traceback. The hub takes SIGINT on its loop, which Lua running
 * outside the loop never yields to, so until the loop runs (the options'
 * chunks, the script, its loading) the first SIGINT arms a hook that
 * raises in the next Lua code run; unless the loop runs meanwhile (uv.run()
 * inside the chunk: the hub's graceful shutdown has it) or the script
 * watches SIGINT itself (its handler has it, as under luv). */
static void interrupted(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  if (!msrt_hub_script_watches(host.hub, SIGINT)) luaL_error(L, "interrupted!");
}

static void on_interrupt(void *L) { /* in the signal handler */
  if (!msrt_hub_running(host.hub))
    lua_sethook(L, interrupted, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

static void interruptible(lua_State *L, int on) {
  msrt_hub_set_interrupt(on ? on_interrupt : NULL, on ? L : NULL);
  if (!on && lua_gethook(L) == interrupted) lua_sethook(L, NULL, 0, 0);
}

/* Run the function on the stack (below nargs args) as the main chunk's
 * coroutine; errors print as `msrt-lua: file:line: message` + traceback. */
static int run_chunk(lua_State *L, int nargs) {
  int rc = msrt_host_call(L, nargs, 0, NULL);
  if (rc == LUA_YIELD) suspended = 1;
  return rc && rc != LUA_YIELD ? 1 : 0;
}

static int load_error(lua_State *L) {
  msrt_host_report(&host, NULL, lua_tostring(L, -1));
  lua_pop(L, 1);
  return 1;
}

/* require(name) pushed; 1 after reporting its error (nothing pushed). */
static int require_push(lua_State *L, const char *name) {
  lua_getglobal(L, "require");
  lua_pushstring(L, name);
  return lua_pcall(L, 1, 1, 0) ? load_error(L) : 0;
}

static int do_string(lua_State *L, const char *chunk) {
  if (luaL_loadbuffer(L, chunk, strlen(chunk), "=(command line)"))
    return load_error(L);
  return run_chunk(L, 0);
}

/* -j/-O (kind 'j'/'O', text after the letter) or -b (argv from the -b
 * on): lua/msrt/jitcmd.lua does what luajit's front end does with them. */
static int do_jit(lua_State *L, char kind, char **args, int nargs) {
  if (require_push(L, "msrt.jitcmd")) return 1;
  lua_getfield(L, -1, (const char[]){kind, 0});
  lua_remove(L, -2);
  luaL_checkstack(L, nargs, "too many arguments to -b");
  for (int i = 0; i < nargs; i++) lua_pushstring(L, args[i]);
  if (lua_pcall(L, nargs, 0, 0)) return load_error(L);
  return 0;
}

static int do_require(lua_State *L, const char *name) {
  if (require_push(L, name)) return 1;
  lua_setglobal(L, name);
  return 0;
}

/* arg table as in lua.c: script at 0, options before it negative. */
static void set_arg(lua_State *L, char **argv, int argc, int script) {
  lua_createtable(L, argc - script - 1, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

/* script 0 = standard input with no arguments. */
static int do_script(lua_State *L, char **argv, int argc, int script) {
  const char *name = script ? argv[script] : NULL;
  if (name && strcmp(name, "-") == 0 && strcmp(argv[script - 1], "--") != 0)
    name = NULL;
  if (luaL_loadfile(L, name)) return load_error(L);
  int n = script ? argc - script - 1 : 0;
  luaL_checkstack(L, n, "too many arguments to script");
  for (int i = 1; i <= n; i++) lua_pushstring(L, argv[script + i]);
  return run_chunk(L, n);
}

/* --check FILE...: msrt.check validates each file as the policy it is. */
static int do_check(lua_State *L, char **files, int n) {
  if (require_push(L, "msrt.check")) return 1;
  lua_getfield(L, -1, "main");
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushstring(L, files[i]);
    lua_rawseti(L, -2, i + 1);
  }
  if (lua_pcall(L, 1, 1, 0)) return load_error(L);
  return (int)lua_tointeger(L, -1);
}

/* require(module).boot() -> true | nil, err before any script runs: the
 * tuning profile (so the blocking pool is sized before its first use),
 * then --watch/--metrics/--ctl. An err prints as one line, no traceback. */
static int boot(lua_State *L, const char *module) {
  if (require_push(L, module)) return 1;
  lua_getfield(L, -1, "boot");
  if (lua_pcall(L, 0, 2, 0)) return load_error(L);
  if (lua_isnil(L, -2)) {
    lua_getglobal(L, "tostring");
    lua_insert(L, -2);
    lua_call(L, 1, 1);
    msrt_host_report(&host, NULL, lua_tostring(L, -1));
    lua_pop(L, 3);
    return 1;
  }
  lua_pop(L, 3);
  return 0;
}

/* -e chunk, -l module, -j cmd (-jcmd), -O[opts] at argv[i]. */
static int do_action(lua_State *L, char **argv, int i) {
  const char *a = argv[i];
  if (a[1] == 'e') return do_string(L, argv[i + 1]);
  if (a[1] == 'l') return do_require(L, argv[i + 1]);
  char *text = a[1] == 'j' && a[2] == 0 ? argv[i + 1] : argv[i] + 2;
  return do_jit(L, a[1], &text, 1);
}

typedef struct {
  int script;          /* index of the script in argv, 0 = none */
  int interactive, version, check;
  int bytecode;        /* index of -b in argv, 0 = none */
  int actions[64];     /* argv indices of -e / -l / -j / -O, in order */
  int nactions;
} cli;

static int need_value(int i, int argc, char **argv) {
  if (i + 1 >= argc) return bad_usage("'%s' needs an argument", argv[i]);
  return 0;
}

static int parse(int argc, char **argv, cli *c) {
  int i = 1;
  for (; i < argc; i++) {
    const char *a = argv[i];
    if (a[0] != '-') break;
    if (strcmp(a, "-") == 0) break;
    if (strcmp(a, "--") == 0) { i++; break; }
    if (strcmp(a, "-e") == 0 || strcmp(a, "-l") == 0) {
      if (need_value(i, argc, argv)) return 2;
      if (c->nactions == 64) return bad_usage("too many %s options", a);
      c->actions[c->nactions++] = i++;
    } else if (a[1] == 'j' || a[1] == 'O') { /* luajit's: -jv, -j v, -O3 */
      if (strcmp(a, "-j") == 0 && need_value(i, argc, argv)) return 2;
      if (c->nactions == 64) return bad_usage("too many %s options", "-j/-O");
      c->actions[c->nactions++] = i;
      if (strcmp(a, "-j") == 0) i++;
    } else if (a[1] == 'b') { /* luajit's -b: the rest is bcsave's */
      c->bytecode = i;
      return 0;
    } else if (strcmp(a, "-i") == 0) c->interactive = 1;
    else if (strcmp(a, "-v") == 0 || strcmp(a, "--version") == 0) c->version = 1;
    else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      exit(0);
    } else if (strcmp(a, "--profile") == 0) {
      if (need_value(i, argc, argv)) return 2;
      host.profile = argv[++i];
    } else if (strcmp(a, "--workers") == 0) {
      if (need_value(i, argc, argv)) return 2;
      char *end;
      long n = strtol(argv[++i], &end, 10);
      if (*end || n < 1 || n > 256)
        return bad_usage("--workers takes a whole number from 1 to 256, not '%s'",
                         argv[i]);
      host.workers = (int)n;
    } else if (strcmp(a, "--log-level") == 0) {
      if (need_value(i, argc, argv)) return 2;
      host.log_level = msrt_log_level_from_name(argv[++i]);
      if (host.log_level < 0)
        return bad_usage("unknown log level '%s' (debug, info, warn, error)",
                         argv[i]);
    } else if (strcmp(a, "--watch") == 0) {
      if (need_value(i, argc, argv)) return 2;
      if (host.nwatch == 16) return bad_usage("too many %s options", a);
      host.watch[host.nwatch++] = argv[++i];
    } else if (strcmp(a, "--nats") == 0) {
      if (need_value(i, argc, argv)) return 2;
      host.nats = argv[++i];
    } else if (strcmp(a, "--listen") == 0) {
      if (need_value(i, argc, argv)) return 2;
      host.listen = argv[++i];
    } else if (strcmp(a, "--metrics") == 0 || strcmp(a, "--ctl") == 0) {
      if (need_value(i, argc, argv)) return 2;
      if (a[2] == 'm') host.metrics = argv[++i];
      else host.ctl = argv[++i];
    } else if (strcmp(a, "--log-format") == 0) {
      if (need_value(i, argc, argv)) return 2;
      host.log_format = argv[++i];
      if (strcmp(host.log_format, "text") && strcmp(host.log_format, "json"))
        return bad_usage("--log-format takes text or json, not '%s'", argv[i]);
    } else if (strcmp(a, "--check") == 0) {
      c->check = i + 1;
      if (c->check >= argc) return bad_usage("%s needs at least one file", a);
      return 0;
    } else {
      return bad_usage("unknown option '%s'", a);
    }
  }
  if (i < argc) c->script = i;
  return 0;
}

/* msrt-lua ctl SOCKET COMMAND: the control socket's client. */
static int ctl_main(int argc, char **argv) {
  if (msrt_host_init(&host)) return 1;
  set_arg(host.L, argv, argc, 1);
  int rc = do_string(host.L, "require('msrt.ctl').main(unpack(arg))");
  int status = msrt_host_close(&host);
  return rc ? 1 : status;
}

/* msrt-lua mcp serve POLICY: the fleet as an MCP server on stdio; the
 * hub runs until the client closes stdin (or a signal). */
static int mcp_main(int argc, char **argv) {
  if (msrt_host_init(&host)) return 1;
  set_arg(host.L, argv, argc, 1);
  int rc = boot(host.L, "msrt.profile");
  if (rc == 0)
    rc = do_string(host.L, "require('msrt.mcp_serve').main(unpack(arg))");
  if (rc) msrt_hub_shutdown(host.hub, "error", 1);
  msrt_host_run(&host, UV_RUN_DEFAULT, NULL);
  int status = msrt_host_close(&host);
  return rc ? 1 : status;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "ctl") == 0) return ctl_main(argc, argv);
  cli c = {0};
  const char *level = getenv("MSRT_LOG_LEVEL"); /* --log-level overrides */
  host.log_level = level && *level ? msrt_log_level_from_name(level)
                                   : MSRT_LOG_INFO;
  if (host.log_level < 0)
    return bad_usage("MSRT_LOG_LEVEL: unknown log level '%s' (debug, info, "
                     "warn, error)", level);
  if (argc > 1 && strcmp(argv[1], "mcp") == 0) return mcp_main(argc, argv);
  int rc = parse(argc, argv, &c);
  if (rc) return rc;
  if (c.version) print_version();
  if (msrt_host_init(&host)) return 1;
  lua_State *L = host.L;
  if (c.check || c.bytecode) {
    rc = c.check ? do_check(L, argv + c.check, argc - c.check)
                 : do_jit(L, 'b', argv + c.bytecode, argc - c.bytecode);
    msrt_host_close(&host);
    return rc ? 1 : 0;
  }
  set_arg(L, argv, argc, c.script ? c.script : argc - 1);
  interruptible(L, 1);
  rc = boot(L, "msrt.profile");
  if (rc == 0 && (host.nwatch || host.metrics || host.ctl || host.nats))
    rc = boot(L, "msrt.ops"); /* requires msrt, which starts --watch */
  if (rc == 0 && host.listen) rc = boot(L, "msrt.listen");
  for (int k = 0; rc == 0 && k < c.nactions; k++)
    rc = do_action(L, argv, c.actions[k]);
  if (rc == 0 && c.script) rc = do_script(L, argv, argc, c.script);
  else if (rc == 0 && !c.nactions && !c.version && isatty(0)) c.interactive = 1;
  else if (rc == 0 && !c.nactions && !c.version && !c.interactive)
    rc = do_script(L, argv, argc, 0); /* as luajit: -i reads stdin itself */
  /* the REPL reads on the hub loop (lua/msrt/repl.lua) */
  if (rc == 0 && c.interactive) rc = do_string(L, "require 'msrt.repl'.start()");
  /* luvit-style, the hub keeps running until nothing can produce work;
   * but a script that ran uv.run() itself owns the loop and ends with its
   * chunk, as under luajit (README "msrt-lua"). */
  interruptible(L, 0);
  if (rc) msrt_hub_shutdown(host.hub, "error", 1);
  else if (suspended || !host.ran_loop || c.interactive)
    msrt_host_run(&host, UV_RUN_DEFAULT, NULL);
  int status = msrt_host_close(&host);
  return rc ? 1 : status;
}
