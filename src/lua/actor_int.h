/* Shared by the files of the actor binding (not part of its face):
 * actor.c makes, boots, runs and releases actor states; actor_rt.c is the
 * `rt` table their Lua (lua/msrt/actor_boot.lua) calls, and the FFI path.
 * Thread-safety: as lua/actor.h. */
#ifndef MSRT_LUA_ACTOR_INT_H
#define MSRT_LUA_ACTOR_INT_H

#include <lauxlib.h>

#include "core/token.h"
#include "lua/actor.h"

/* An actor: its cell, its state, what its turns keep between calls. */
typedef struct {
  msrt_actor *cell;  /* the record's own reference */
  msrt_rt *rt;
  uint64_t id;
  char name[64];
  lua_State *L, *co;
  char *spec;
  size_t spec_len;
  /* a publish blocked on full mailboxes: made when one first blocks (an
   * actor that never waits for room carries none); a publish that goes
   * through uses its worker thread's (actor_rt.c) */
  msrt_bus_pending *pend;
  uint64_t inbox_sub;          /* <inbox>.> on the sys lane, 0 = none */
  char inbox[sizeof "_INBOX." + MSRT_TOKEN_LEN]; /* "_INBOX.<token>" */
  uint64_t *subs;              /* subscriptions to drop at release */
  size_t nsubs, capsubs;
  int blocked;                 /* the last publish was held for room
                                  (lerror.h); its other errors are the
                                  worker thread's (actor_rt.c) */
  msrt_inbox_node *exit_node;  /* carries the exit to the hub, made ahead */
  int exited;
  int aborted; /* creation failed: stop without ever booting */
  int unbooted; /* counted in `unbooted` below until boot ran */
} lactor;

/* Add a subscription to drop at release: MSRT_E_OK or MSRT_E_NOMEM. */
msrt_code msrt_lactor_add_sub(lactor *la, uint64_t id);

/* Drop subscription id if la holds it (ctx:unsubscribe): MSRT_E_OK,
 * MSRT_E_NOT_FOUND (not one of la's, or its inbox's: ctx:request needs
 * that one) or MSRT_E_NOMEM (msrt_bus_unsubscribe; nothing changed).
 * The actor's worker thread, in its turn. */
msrt_code msrt_lactor_drop_sub(lactor *la, uint64_t id);

/* The test hook MSRT_TEST_ROOM_WAKER_DELAY_MS (ms, 0 when unset): each
 * room waker waits that long before it runs (spec/actors_spec.lua). */
unsigned msrt_lactor_room_waker_delay_ms(void);

/* rt.more(rt) -> the function of actor_ctx.lua's bytecode, with
 * msrt_lactor_more_fns added to the table rt (a lua_CFunction, upvalue 1
 * the record; raises when the state is out of memory). */
int msrt_lactor_more(lua_State *L);

/* The `rt` functions of an actor state, upvalue 1 the record (actor_rt.c),
 * NULL-terminated: msrt_lactor_fns, which every state has (actor_boot.lua
 * calls them), and msrt_lactor_more_fns, which rt.more adds (actor_ctx.lua
 * calls them: an idle actor does without their closures). */
extern const luaL_Reg msrt_lactor_fns[];
extern const luaL_Reg msrt_lactor_more_fns[];

#endif
