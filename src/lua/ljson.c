/* msrt.core.json_encode / json_decode: the JSON rules of the process edge
 * (proc/codec.h) for Lua code; the Lua face is lua/msrt/json.lua. Both
 * work on string.buffer serializations, so no Lua value is walked in C.
 * Pure: any Lua state. */
#include <lauxlib.h>

#include "lua/lerror.h"
#include "lua/lproc.h"
#include "proc/codec.h"

/* json_encode(serialization) -> JSON text | nil, err (invalid_arg naming
 * why: a dictionary reference, too deep...) */
static int l_json_encode(lua_State *L) {
  size_t n;
  const char *p = luaL_checklstring(L, 1, &n);
  msrt_sbuf b = {0};
  const char *why = "out of memory";
  msrt_code rc = msrt_lua_to_json((const unsigned char *)p, n, &b, &why);
  if (rc == MSRT_E_OK) lua_pushlstring(L, b.p ? b.p : "", b.len);
  msrt_sbuf_free(&b);
  if (rc != MSRT_E_OK) /* invalid_arg, as before, whatever the reason */
    return msrt_lua_fail(L, MSRT_E_INVALID_ARG,
                         "the value cannot be written as JSON: %s", why);
  return 1;
}

/* json_decode(text) -> serialization | nil, err (invalid_arg: "invalid
 * JSON at byte 7", "invalid UTF-8 at byte 3", a precheck reason; nomem) */
static int l_json_decode(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  char detail[128];
  const char *reason;
  cJSON *v = msrt_json_parse(s, n, &reason, detail, sizeof detail);
  if (!v) return msrt_lua_fail(L, MSRT_E_INVALID_ARG, "%s", detail);
  msrt_sbuf b = {0};
  msrt_code rc = msrt_json_to_lua(v, &b);
  cJSON_Delete(v);
  if (rc == MSRT_E_OK) lua_pushlstring(L, b.p, b.len);
  msrt_sbuf_free(&b);
  if (rc != MSRT_E_OK) return msrt_lua_fail(L, rc, "out of memory");
  return 1;
}

void msrt_lua_open_json(lua_State *L) {
  static const luaL_Reg fns[] = {{"json_encode", l_json_encode},
                                 {"json_decode", l_json_decode},
                                 {NULL, NULL}};
  luaL_register(L, NULL, fns);
}
