/* The msrt.core bindings of the runtime's parts, one file per part (as
 * luv has one per handle type); lua/msrt/hub.lua and actors.lua are their
 * callers:
 *   lrt.c      rt_start, rt_stop, rt_tune, set_dispatch, keep_alive,
 *              drain_inbox: the runtime (lua/rt.h) and the hub inbox's
 *              drain into the Lua dispatcher (msrt_lhub_next, below)
 *   lactor.c   actor_new, actor_stop, actor_release, actor_mailbox:
 *              actors (lua/actor.h), their cells typed userdata with __gc
 *   lbus.c     publish, publish_error, hub_rt (msrt_lhub_publish,
 *              below), pending_wait, pending_retry, subscribe,
 *              unsubscribe, set_ready, stamp_subscribe, stamp_unsubscribe,
 *              token, undecodable: the publish path (bus/bus.h);
 *              msrt_lua_read_pub_args, publish's arguments for actors'
 *              rt.publish too (actor_rt.c)
 *   lmetrics.c metrics: the scheduler's and the router's counters
 *   lroutes.c  routes_compile, routes_install: routing tables
 *              (router/routes.h)
 *   lqueue.c   queue_open and the queue handle: durable queues
 *              (queue/queue.h)
 *   lbridge.c  nats_open, nats_filters, nats_info, nats_stats, nats_close:
 *              the NATS bridge (bridge/bridge.h)
 *   ljs.c      jsq_open and the JetStream queue handle (bridge/js.h)
 *   lnats.c    nats_server and its server and listener handles, and
 *              pattern_check: NATS clients (nats/conn.h, nats/listen.h,
 *              nats/auth.h)
 *   lweb.c     web_listen and its listener handle: HTTP and WebSocket
 *              (web/web.h)
 *   lhttp.c    http_client and its request handles, sse_parser: the
 *              HTTP client (http/http.h) and event streams (http/sse.h)
 * Errors come back as `nil, err` (lua/lerror.h). Hub thread only. */
#ifndef MSRT_LUA_LRT_H
#define MSRT_LUA_LRT_H

#include <lua.h>

#include "lua/rt.h"

/* The started runtime (the host's, lua/host.h); raises a Lua error when it
 * is not started. */
msrt_rt *msrt_lua_rt(lua_State *L);

/* The started runtime, or NULL (not started, or L is not a host's). */
msrt_rt *msrt_lua_rt_opt(lua_State *L);

/* The overflow policy named at stack index idx ("block", "drop_oldest",
 * "drop_newest", "error"; nil or none: MSRT_OVERFLOW_DEFAULT); raises a
 * Lua argument error for any other value (loverflow.c). */
msrt_overflow msrt_lua_overflow(lua_State *L, int idx);

/* Set overflow_names, the policies' names in core/overflow.h's order (a
 * list), in the table at the top of the stack: msrt.core's, and the fuzz
 * profile driver's stand-in (loverflow.c). */
void msrt_lua_open_overflow(lua_State *L);

/* The arguments of publish(subject, payload, reply, priority, headers,
 * reply_ttl_ms), msrt.core.publish's and an actor's rt.publish: strings
 * pointing into the Lua stack (valid while the arguments stay there;
 * reply and headers NULL when nil), priority as msrt_lua_priority reads
 * it (lua/host.h: nil is the default, a number out of 1..10 is 0, which
 * msrt_bus_make refuses), reply_ttl_ms a request's timeout in ms (nil:
 * 0, none; msrt_bus_reply_ttl). One reader for both publishers, so they
 * cannot disagree on what an argument means. */
typedef struct {
  const char *subject, *payload, *reply, *headers;
  size_t subject_len, payload_len, reply_len, headers_len;
  int priority;
  double reply_ttl_ms;
} msrt_lua_pub_args;

/* Read publish's arguments from stack indexes 1..6 into *a; a wrong type
 * or priority raises a Lua argument error at the caller (lbus.c). */
void msrt_lua_read_pub_args(lua_State *L, msrt_lua_pub_args *a);

/* token() -> 22 random characters (core/token.h), for a request's inbox
 * | nil, err: msrt.core.token and an actor's rt.token (lbus.c). */
int msrt_lua_token(lua_State *L);

/* Each adds its file's functions to the table at the top of the stack. */
void msrt_lua_open_rt(lua_State *L);
void msrt_lua_open_actor(lua_State *L);
void msrt_lua_open_bus(lua_State *L);
void msrt_lua_open_web(lua_State *L);
void msrt_lua_open_http(lua_State *L);
void msrt_lua_open_metrics(lua_State *L);
void msrt_lua_open_routes(lua_State *L);
void msrt_lua_open_queue(lua_State *L);
void msrt_lua_open_bridge(lua_State *L);
void msrt_lua_open_jsq(lua_State *L);

/* What both stores' queue handles share (lqueue.c; ljs.c uses them):
 * q:subscribe(pattern), ep subscribed on the runtime's bus to the pattern
 * at argument 2, pushing the subscription id or nil, err (returns the
 * count pushed); and a stored message's fields (subject, payload, hdr
 * when it has headers, flags, priority) set on the table on top. */
int msrt_lua_queue_subscribe(lua_State *L, msrt_endpoint ep);
void msrt_lua_queue_msg_fields(lua_State *L, const msrt_envelope *e);

/* The bridge of the handle at stack index idx (core.nats_open's); raises
 * a Lua error when it is not one or is closed (lbridge.c). */
struct msrt_bridge;
struct msrt_bridge *msrt_lua_check_bridge(lua_State *L, int idx);
void msrt_lua_open_nats(lua_State *L);

/* ---- The hub's pump (lua/msrt/hub.lua, through the FFI: declared again
 * there with ffi.cdef; exported by msrt-lua). The inbox drain (lrt.c)
 * hands each run of items for the hub's Lua (every kind but timer
 * requests and process stdin, which C handles in their place in the
 * order) to the dispatcher core.set_dispatch set, called with no
 * arguments as a hub coroutine (msrt_host_call); it takes the items one
 * at a time with msrt_lhub_next. A callback that yields keeps that
 * coroutine: the dispatcher is called again, on another, for the rest of
 * the run. One item per call, in a compiled loop, where a coroutine and
 * ten pushed values per item were too slow. Hub thread only. */
typedef struct {
  int kind;            /* MSRT_IN_* (bus/bus.h) */
  int priority, flags; /* the envelope's (0 without one) */
  double target;       /* the item's target: hub subscription, actor or wake id */
  double ptr;          /* the item's ptr as a number: overload ms; exit
                          without a record: 2 = shutdown, else out of memory */
  double id;           /* the envelope's id */
  double ttl_ms;       /* how long a request's reply is still awaited (ms);
                          -1: no deadline; 0: past */
  const char *subject, *reply, *payload, *headers; /* NULL when absent */
  size_t subject_len, reply_len, payload_len, headers_len;
} msrt_lhub_item;

/* Fill out with the next item of the run being drained and return 1, or
 * return 0 when the run has none left (or no drain is on). Its bytes stay
 * valid until the next call. */
int msrt_lhub_next(msrt_lhub_item *out);

/* Write a fresh random token (MSRT_TOKEN_LEN characters and a NUL,
 * core/token.h) at out, for a hub request's inbox: 1, or 0 when the
 * kernel gave no randomness (msrt.core.token then says why). Through the
 * FFI, as msrt_lhub_next. */
int msrt_lhub_token(char *out);

/* The time a stamp slot (msrt.core.stamp_subscribe's) was last written:
 * CLOCK_MONOTONIC ns, 0 before the first message. An atomic load, since
 * a publishing worker stores it at any time (a plain FFI read of the
 * slot is a data race ThreadSanitizer reports). Through the FFI, as
 * msrt_lhub_next (lbus.c); any thread. */
uint64_t msrt_lhub_stamp(const void *slot);

/* Publish from the hub's Lua as msrt.core.publish does (its arguments as
 * msrt_lua_pub_args reads them: reply and h NULL when absent, prio 1..10
 * or 0 for an invalid one, ttl_ms 0 for none) without a Lua string for
 * the payload (hub.lua encodes it into a string.buffer): how many
 * endpoints took it, or -1, whose nil, err (or nil, blocked err, pending)
 * msrt.core.publish_error() then returns; call it at once, before any
 * other publish. rt: msrt.core.hub_rt(). Through the FFI, as
 * msrt_lhub_next (lbus.c). Hub thread only. */
long msrt_lhub_publish(void *rt, const char *s, size_t slen, const char *r,
                       size_t rlen, const void *p, size_t plen, int prio,
                       const char *h, size_t hlen, double ttl_ms);

/* The NATS server of the handle at stack index idx (core.nats_server's),
 * for another transport's binding to make connections on (nats/conn.h);
 * raises a Lua error when it is not one or is closed. */
struct msrt_nats_server *msrt_lua_nats_server(lua_State *L, int idx);

#endif
