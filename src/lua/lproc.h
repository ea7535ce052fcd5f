/* The msrt.core functions for child processes (lproc.c); the Lua face is
 * lua/msrt/process.lua. Hub thread only. */
#ifndef MSRT_LUA_LPROC_H
#define MSRT_LUA_LPROC_H

#include <lua.h>
#include <stdint.h>

#include "core/envelope.h"
#include "lua/rt.h"

/* Register proc_* functions into the table at the top of the stack. */
void msrt_lua_open_proc(lua_State *L);

/* Register json_encode and json_decode (ljson.c: the process edge's JSON
 * rules for Lua code, lua/msrt/json.lua) into the table at the top. */
void msrt_lua_open_json(lua_State *L);

/* An envelope for the stdin of process id (an MSRT_IN_PROC item from the
 * hub inbox), holding the slot of the process's stdin gate its publisher
 * took (rt.c); the line keeps the slot until written. Takes the
 * reference; a copy that cannot be written (the process has gone, stdin
 * closed, data that is not JSON) is moved in the router's accounting from
 * delivered to drop_closed or drop_other. e NULL: room appeared for the
 * process's paused output (retry it). */
void msrt_lproc_deliver(msrt_rt *rt, uint64_t id, msrt_envelope *e);

#endif
