/* Errors as Lua sees them (docs/architecture.md "Errors"): a table with code,
 * category, severity, recovery and message, whose tostring reads
 * "<message> (<category>/<code>)". Hub thread or any state's own thread. */
#ifndef MSRT_LUA_LERROR_H
#define MSRT_LUA_LERROR_H

#include <lua.h>

#include "core/error.h"

/* Push err as an error table. */
void msrt_lua_push_error(lua_State *L, const msrt_error *err);

/* Push nil and err as an error table; returns 2 so a C function can
 * `return msrt_lua_fail_err(L, &err)`. */
int msrt_lua_fail_err(lua_State *L, const msrt_error *err);

/* A publish or send held for room in full `block` endpoints, as Lua sees
 * it: nil and a mailbox_full error whose field `blocked` is true. Not a
 * failure: the caller waits for room, retries, and it is delivered
 * (lua/msrt/hub.lua, actor_boot.lua, process.lua). Returns 2. */
int msrt_lua_blocked(lua_State *L);

/* Push nil and an error table built from code and a printf-style message;
 * returns 2 so a C function can `return msrt_lua_fail(L, ...)`. */
int msrt_lua_fail(lua_State *L, msrt_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* lua_CFunction error(code, message [, fields]) -> the error table of
 * code (a name of core/error.h's codes; another raises at argument 1)
 * with message (kept whole); fields may override category, severity or
 * recovery and add any other key (file, line, rule...). */
int msrt_lua_error(lua_State *L);

/* msrt.core.error (msrt_lua_error) and is_error, registered into the
 * table at the top of the stack. */
void msrt_lua_open_errors(lua_State *L);

#endif
