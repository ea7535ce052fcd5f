/* msrt.core's HTTP client and event-stream parser (lrt.h): src/http's
 * http.h with its callbacks running a Lua function of the main state,
 * and sse.h. Hub thread only.
 *
 * core.http_client() -> client | nil, err (internal: libcurl would not
 *   start; nomem): an HTTP client on the hub's loop.
 * client:request(opts, fn) -> req | nil, err (invalid_arg, closed,
 *   nomem). opts: method (default "GET"), url (http:// or https://),
 *   headers (a list of "Name: value" strings), body (a string), timeout_ms
 *   (the whole transfer; default none), connect_timeout_ms. fn(what, ...)
 *   runs on the hub for each event, in order: ("head", status, headers:
 *   a table of lowercased names to values, repeats joined by ", "),
 *   ("body", bytes) for each piece, then ("done", nil) or ("done", err):
 *   network (refused, reset, unresolved), timeout, limit (a header
 *   block over 64 KiB), nomem. It must not yield; an error in it is
 *   reported and the request goes on.
 * req:cancel(): abandon it (nothing more is called); idempotent.
 * client:active() -> requests in flight; client:close() cancels them all
 *   (also at collection; idempotent).
 * core.sse_parser([max bytes]) -> parser; parser:feed(bytes) -> a list of
 *   events {type, data, id} | nil, err (limit: a line or an event's data
 *   over max, 16 MiB by default; the parser is spent); parser:retry() ->
 *   the stream's last retry field (ms) or nil.
 */
#include "lua/lrt.h"

#include <ctype.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "http/sse.h"
#include "lua/host.h"
#include "lua/lerror.h"
#include "lua/lfield.h"

#define CLIENT "msrt.http_client"
#define REQ "msrt.http_req"
#define SSE "msrt.sse_parser"

typedef struct lclient {
  msrt_http *c;
  lua_State *L; /* the main state */
} lclient;

typedef struct lreq {
  msrt_http_req *r; /* NULL once done or cancelled */
  lua_State *L;
  int fn, self;     /* registry refs while in flight */
} lreq;

static lclient *check_client(lua_State *L) { return luaL_checkudata(L, 1, CLIENT); }

/* The request is over: its refs go (the userdata may then be collected). */
static void release(lreq *q) {
  q->r = NULL;
  luaL_unref(q->L, LUA_REGISTRYINDEX, q->fn);
  luaL_unref(q->L, LUA_REGISTRYINDEX, q->self);
  q->fn = q->self = LUA_NOREF;
}

/* fn(what, ...) with the nargs values on top after what. */
static void call(lreq *q, const char *what, int nargs) {
  lua_State *L = q->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, q->fn);
  lua_pushstring(L, what);
  lua_insert(L, -nargs - 2);
  lua_insert(L, -nargs - 2);
  if (lua_pcall(L, nargs + 1, 0, 0)) {
    msrt_host_report(msrt_host_get(L), "http request callback", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

/* "Name: value\r\n" lines into a table of lowercased names. */
static void push_headers(lua_State *L, const char *h, size_t len) {
  lua_newtable(L);
  const char *end = h + len;
  while (h < end) {
    const char *eol = memchr(h, '\n', (size_t)(end - h));
    const char *stop = eol ? eol : end;
    const char *colon = memchr(h, ':', (size_t)(stop - h));
    if (colon && colon > h) {
      luaL_Buffer b;
      luaL_buffinit(L, &b);
      for (const char *p = h; p < colon; p++) luaL_addchar(&b, (char)tolower((unsigned char)*p));
      luaL_pushresult(&b);
      const char *v = colon + 1, *ve = stop;
      while (v < ve && (*v == ' ' || *v == '\t')) v++;
      while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) ve--;
      lua_pushvalue(L, -1);
      lua_rawget(L, -3);
      if (lua_isstring(L, -1)) {
        lua_pushliteral(L, ", ");
        lua_pushlstring(L, v, (size_t)(ve - v));
        lua_concat(L, 3);
      } else {
        lua_pop(L, 1);
        lua_pushlstring(L, v, (size_t)(ve - v));
      }
      lua_rawset(L, -3);
    }
    h = stop + 1;
  }
}

static void on_head(void *ud, long status, const char *headers, size_t len) {
  lreq *q = ud;
  lua_pushnumber(q->L, (double)status);
  push_headers(q->L, headers, len);
  call(q, "head", 2);
}

static void on_body(void *ud, const char *bytes, size_t n) {
  lreq *q = ud;
  lua_pushlstring(q->L, bytes, n);
  call(q, "body", 1);
}

static void on_done(void *ud, msrt_code code, const char *why) {
  lreq *q = ud;
  q->r = NULL; /* freed by the client after this returns */
  if (code == MSRT_E_OK) {
    lua_pushnil(q->L);
  } else {
    msrt_error err;
    msrt_error_set(&err, code, "%s", why);
    msrt_lua_push_error(q->L, &err);
  }
  call(q, "done", 1);
  release(q);
}

static int l_request(lua_State *L) {
  lclient *lc = check_client(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  if (!lc->c) return msrt_lua_fail(L, MSRT_E_CLOSED, "the HTTP client is closed");
  msrt_http_opts o;
  memset(&o, 0, sizeof o);
  o.method = msrt_lua_field_str(L, 2, "method");
  if (!o.method) o.method = "GET";
  o.url = msrt_lua_field_str(L, 2, "url");
  o.headers = msrt_lua_field_strs(L, 2, "headers", &o.n_headers);
  lua_getfield(L, 2, "body");
  if (!lua_isnil(L, -1)) o.body = luaL_checklstring(L, -1, &o.body_len);
  o.timeout_ms = (long)msrt_lua_field_size(L, 2, "timeout_ms");
  o.connect_timeout_ms = (long)msrt_lua_field_size(L, 2, "connect_timeout_ms");
  lreq *q = lua_newuserdata(L, sizeof *q);
  q->r = NULL, q->L = lc->L, q->fn = q->self = LUA_NOREF;
  luaL_getmetatable(L, REQ);
  lua_setmetatable(L, -2);
  static const msrt_http_cbs cbs = {on_head, on_body, on_done};
  msrt_error err;
  q->r = msrt_http_request(lc->c, &o, &cbs, q, &err);
  if (!q->r) return msrt_lua_fail_err(L, &err);
  lua_pushvalue(L, 3);
  q->fn = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, -1);
  q->self = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

static int l_cancel(lua_State *L) {
  lreq *q = luaL_checkudata(L, 1, REQ);
  if (q->r) {
    msrt_http_cancel(q->r);
    release(q);
  }
  return 0;
}

static int l_active(lua_State *L) {
  lclient *lc = check_client(L);
  lua_pushnumber(L, lc->c ? (double)msrt_http_active(lc->c) : 0);
  return 1;
}

static int l_close(lua_State *L) {
  lclient *lc = check_client(L);
  msrt_http_close(lc->c); /* no callback of its requests runs again */
  lc->c = NULL;
  return 0;
}

static int l_http_client(lua_State *L) {
  lclient *lc = lua_newuserdata(L, sizeof *lc);
  lc->L = msrt_host_get(L)->L;
  msrt_error err;
  lc->c = msrt_http_new(msrt_hub_loop(msrt_host_get(L)->hub), &err);
  if (!lc->c) return msrt_lua_fail_err(L, &err);
  luaL_getmetatable(L, CLIENT);
  lua_setmetatable(L, -2);
  return 1;
}

/* ---- the event-stream parser ------------------------------------------- */

static bool on_event(void *ud, const char *type, const char *data, size_t len, const char *id) {
  lua_State *L = ud;
  lua_createtable(L, 0, 3);
  lua_pushstring(L, type), lua_setfield(L, -2, "type");
  lua_pushlstring(L, data, len), lua_setfield(L, -2, "data");
  lua_pushstring(L, id), lua_setfield(L, -2, "id");
  lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
  return false;
}

static int l_feed(lua_State *L) {
  msrt_sse *p = luaL_checkudata(L, 1, SSE);
  size_t n;
  const char *b = luaL_checklstring(L, 2, &n);
  lua_newtable(L);
  msrt_code rc = msrt_sse_feed(p, b, n, on_event, L);
  if (rc == MSRT_E_LIMIT) return msrt_lua_fail(L, rc, "an event-stream line or event is over %zu bytes", p->max);
  if (rc != MSRT_E_OK) return msrt_lua_fail(L, rc, "no memory for an event stream");
  return 1;
}

static int l_retry(lua_State *L) {
  msrt_sse *p = luaL_checkudata(L, 1, SSE);
  if (p->retry_ms < 0) lua_pushnil(L);
  else lua_pushnumber(L, (double)p->retry_ms);
  return 1;
}

static int l_sse_gc(lua_State *L) {
  msrt_sse_free(luaL_checkudata(L, 1, SSE));
  return 0;
}

static int l_sse_parser(lua_State *L) {
  size_t max = (size_t)luaL_optnumber(L, 1, 0);
  msrt_sse *p = lua_newuserdata(L, sizeof *p);
  msrt_sse_init(p, max);
  luaL_getmetatable(L, SSE);
  lua_setmetatable(L, -2);
  return 1;
}

static void meta(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc) {
  luaL_newmetatable(L, name);
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "__index");
  luaL_register(L, NULL, methods);
  if (gc) {
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
}

void msrt_lua_open_http(lua_State *L) {
  static const luaL_Reg client[] = {
      {"request", l_request}, {"active", l_active}, {"close", l_close}, {NULL, NULL}};
  static const luaL_Reg req[] = {{"cancel", l_cancel}, {NULL, NULL}};
  static const luaL_Reg sse[] = {{"feed", l_feed}, {"retry", l_retry}, {NULL, NULL}};
  meta(L, CLIENT, client, l_close);
  meta(L, REQ, req, NULL);
  meta(L, SSE, sse, l_sse_gc);
  lua_pushcfunction(L, l_http_client);
  lua_setfield(L, -2, "http_client");
  lua_pushcfunction(L, l_sse_parser);
  lua_setfield(L, -2, "sse_parser");
}
