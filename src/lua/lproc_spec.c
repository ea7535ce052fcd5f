/* process.lua's checked spec table read into an msrt_proc_spec
 * (lua/lproc.h msrt_lproc_spec), for lproc.c's proc_spawn. Hub thread
 * only. */
#include <lauxlib.h>
#include <string.h>

#include "lua/lfield.h"
#include "lua/lproc.h"
#include "lua/lrt.h"

static void read_limits(lua_State *L, msrt_proc_limits *l) {
  lua_getfield(L, 1, "limits");
  int t = lua_gettop(L);
  int has = lua_istable(L, t);
  l->nofile = has ? (long long)msrt_lua_field_num(L, t, "nofile", -1) : -1;
  l->as_bytes =
      has ? (long long)msrt_lua_field_num(L, t, "as_bytes", -1) : -1;
  l->cpu_s = has ? (long long)msrt_lua_field_num(L, t, "cpu_s", -1) : -1;
  l->nproc = has ? (long long)msrt_lua_field_num(L, t, "nproc", -1) : -1;
  lua_pop(L, 1);
}

static msrt_codec codec_of(const char *s) {
  if (s && strcmp(s, "lines") == 0) return MSRT_CODEC_LINES;
  if (s && strcmp(s, "raw") == 0) return MSRT_CODEC_RAW;
  if (s && strcmp(s, "jsonrpc") == 0) return MSRT_CODEC_JSONRPC;
  if (s && strcmp(s, "lsp") == 0) return MSRT_CODEC_LSP;
  return MSRT_CODEC_JSON_LINES;
}

void msrt_lproc_spec(lua_State *L, msrt_proc_spec *s) {
  luaL_checktype(L, 1, LUA_TTABLE);
  memset(s, 0, sizeof *s);
  s->name = msrt_lua_field_str(L, 1, "name");
  s->cwd = msrt_lua_field_str(L, 1, "cwd");
  s->codec = codec_of(msrt_lua_field_str(L, 1, "codec"));
  s->publish_as = msrt_lua_field_str(L, 1, "publish_as");
  s->rpc = msrt_lua_field_str(L, 1, "rpc");
  s->inbox = msrt_lua_field_str(L, 1, "inbox");
  s->argv = msrt_lua_field_strs(L, 1, "argv", &s->argc);
  s->env = msrt_lua_field_strs(L, 1, "env", &s->envc);
  s->allow = msrt_lua_field_strs(L, 1, "allow", &s->nallow);
  s->deny = msrt_lua_field_strs(L, 1, "deny", &s->ndeny);
  read_limits(L, &s->limits);
  s->stop_signal = (int)msrt_lua_field_num(L, 1, "stop_signal", 0);
  s->grace_ms = (long)msrt_lua_field_num(L, 1, "grace_ms", -1);
  s->max_line = (size_t)msrt_lua_field_num(L, 1, "max_line", 0);
  s->stdin_capacity = (size_t)msrt_lua_field_num(L, 1, "capacity", 0);
  s->stdin_bytes = (size_t)msrt_lua_field_num(L, 1, "stdin_bytes", 0);
  s->eof_wait_ms = (long)msrt_lua_field_num(L, 1, "eof_wait_ms", -1);
  lua_getfield(L, 1, "overflow");
  s->overflow = msrt_lua_overflow(L, -1);
  lua_pop(L, 1);
}
