/* Lua actors on worker threads (docs/architecture.md "Threads and the path of a
 * message").
 *
 * An actor is a record holding its scheduler cell and its own lua_State,
 * made lazily on the worker that gives it its first turn (so creating
 * thousands of actors from the hub costs the hub one allocation each and
 * the Lua states are built in parallel on the workers). The state runs
 * lua/msrt/actor_boot.lua (precompiled once by the hub) which loads the
 * actor's module and returns the loop that a coroutine runs: each turn
 * resumes it with the turn's budget.
 *
 * Thread-safety: msrt_lactor_new and msrt_lactor_boot_code on the hub;
 * msrt_lactor_run / msrt_lactor_release are the scheduler's callbacks.
 */
#ifndef MSRT_LUA_ACTOR_H
#define MSRT_LUA_ACTOR_H

#include <stddef.h>
#include <stdint.h>

#include "lua/rt.h"

/* Set the bytecode of actor_boot.lua (which every actor state runs), of
 * actor_ctx.lua (which a state loads when it first needs the rest of ctx)
 * and the package paths every actor state gets (all copied). Hub, before
 * the first actor. */
void msrt_lactor_setup(const char *boot, size_t boot_len, const char *more,
                       size_t more_len, const char *path, const char *cpath);

/* Make an actor from an encoded spec (string.buffer encoding of the table
 * actor_boot.lua reads: name, module/handlers bytecode, args), its mailbox
 * bounded by capacity messages and bytes bytes (0: the profile's), subscribed
 * to each of patterns (in queue group `queue` when non-NULL) before it
 * starts. Its cell is returned with one reference for the caller (the
 * hub's handle); a sys message starts it. name must be a valid subject
 * token. sub_ids (NULL, or room for npatterns) receives the
 * subscriptions' ids, for readiness (msrt_router_set_ready); they end with
 * the actor. Returns NULL with err filled on failure (a bad pattern
 * included: nothing is left subscribed then). */
msrt_actor *msrt_lactor_new(msrt_rt *rt, const char *name, const void *spec,
                            size_t spec_len, size_t capacity, size_t bytes,
                            msrt_overflow policy, const char *const *patterns,
                            size_t npatterns, const char *queue,
                            uint64_t *sub_ids, msrt_error *err);

/* Ask the actor behind cell to stop with a reason ("normal", "shutdown"
 * or anything else); its terminate runs in its last turn. Any thread. */
void msrt_lactor_stop(msrt_actor *cell, const char *reason);

msrt_run_result msrt_lactor_run(msrt_actor *a, int budget, void *ud,
                                int worker);
void msrt_lactor_release(msrt_actor *a, void *ud);

/* The FFI path actor_boot.lua switches to at an actor's first message
 * (declared again there with ffi.cdef; exported by msrt-lua). `la` is the
 * actor record (rt.self()). Worker thread running that actor only.
 *   msrt_lactor_ffi_pop      the next envelope (the caller owns its
 *                            reference) or NULL when the turn's mailbox
 *                            view is empty
 *   msrt_lactor_ffi_unref    drop a popped envelope
 *   msrt_lactor_ffi_publish  publish: subject s (slen bytes), reply r (NULL
 *                            or rlen bytes), payload p (plen bytes, a
 *                            string.buffer encoding), priority 1..10,
 *                            headers h (NULL or hlen bytes, the wire form
 *                            of lua/msrt/headers.lua), ttl_ms (a
 *                            request's timeout: how long the reply stays
 *                            valid to a process handed it; 0 = none);
 *                            returns the endpoints reached (>= 0), or -1
 *                            (a number: what the FFI can return cheaply):
 *                            rt.last_error() then gives nil, err as the
 *                            C API's publish does (invalid_subject,
 *                            payload_too_big, mailbox_full...; err.blocked
 *                            when `block` mailboxes are full: then
 *                            rt.wait_room / rt.retry)
 *   msrt_lactor_ffi_inbox    write a fresh reply subject into out (room
 *                            for 64 bytes): this actor's inbox prefix
 *                            (made and subscribed at the first call, as
 *                            rt.inbox) and a random token; returns its
 *                            length, or -1 (no randomness, or the
 *                            subscription failed: rt.inbox and rt.token
 *                            then say why)
 *   msrt_lactor_ffi_closed   whether the actor was asked to stop, as
 *                            rt.closed (1 or 0)
 *   msrt_lactor_ffi_set_waiting  as rt.set_waiting (on: 1 or 0)
 *   msrt_lactor_ffi_give_way  1 when the actor should give way now
 *                            (sched.h msrt_actor_should_yield): its
 *                            coroutine then yields "more" and goes on in
 *                            a later turn; else 0
 *   msrt_lactor_ffi_now_ms   CLOCK_MONOTONIC in ms (fractional), as
 *                            rt.now_ms and the hub's alarms count; any
 *                            thread */
msrt_envelope *msrt_lactor_ffi_pop(void *la);
void msrt_lactor_ffi_unref(msrt_envelope *e);
long msrt_lactor_ffi_publish(void *la, const char *s, size_t slen,
                             const char *r, size_t rlen, const void *p,
                             size_t plen, int prio, const char *h,
                             size_t hlen, double ttl_ms);
long msrt_lactor_ffi_inbox(void *la, char *out);
int msrt_lactor_ffi_closed(void *la);
void msrt_lactor_ffi_set_waiting(void *la, int on);
int msrt_lactor_ffi_give_way(void *la);
double msrt_lactor_ffi_now_ms(void);

/* Control subjects carried on the sys lane (flag MSRT_ENV_CONTROL). */
#define MSRT_ENV_CONTROL 0x80
#define MSRT_CTL_START "_START"
#define MSRT_CTL_TIMER "_TIMER"
#define MSRT_CTL_ROOM "_ROOM"
#define MSRT_CTL_STOP "_STOP"

/* Push a control envelope (subject ctl, text payload) to cell's sys lane.
 * Returns msrt_actor_push_sys's code (MSRT_E_NOMEM when the envelope
 * cannot be made). Any thread. */
msrt_code msrt_lactor_control(msrt_actor *cell, const char *ctl,
                              const char *text);

#endif
