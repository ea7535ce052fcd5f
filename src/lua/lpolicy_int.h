/* Shared by the files of the policy-state binding (not part of its face,
 * lua/lpolicy.h): lpolicy.c makes the states and runs each call within
 * its budget; lpolicy_copy.c copies values between the states. Hub thread
 * only. */
#ifndef MSRT_LUA_LPOLICY_INT_H
#define MSRT_LUA_LPOLICY_INT_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

/* A policy state, held in the host state as a userdata. */
typedef struct {
  lua_State *P;
  size_t used, cap;  /* bytes P holds, and the most it may */
  uint64_t deadline; /* uv_hrtime() at which the running call ends; 0 idle */
  int time_ms;
  int refs;          /* P registry ref: {fn = id, [id] = fn} */
  int entry;         /* P registry ref: the in_policy closure */
  int dumper;        /* P registry ref: the dump_in_policy closure */
  int next_id;
} pstate;

/* A proxy of a policy function (upvalues: its pstate, the function's id
 * in s->refs): copies its arguments in, runs the function within the
 * budget and copies its results out (lpolicy.c). */
int msrt_lpolicy_proxy_call(lua_State *H);

/* Push onto P a copy of H's value at i (depth: how deep in a table it
 * is); a proxy into s goes in as its function, any other function, a
 * userdata or a thread as nil (left out of a table). Runs inside P's
 * protected call: raises in P past 64 levels (or a cycle). */
void msrt_lpolicy_copy_in(lua_State *H, int i, lua_State *P, pstate *s,
                          int depth);

/* Check what is to leave P at i (types, depth) and give each function an
 * id, so that msrt_lpolicy_copy_out cannot fail on P's side. Runs
 * protected, in P: raises for a userdata or thread, or past 64 levels. */
void msrt_lpolicy_prepare(lua_State *P, pstate *s, int i, int depth);

/* Push P's value at i (prepared) onto H; ps is the index of the pstate in
 * H; a function comes out as a proxy. Only H may raise here (out of
 * memory). */
void msrt_lpolicy_copy_out(lua_State *P, int i, lua_State *H, int ps);

#endif
