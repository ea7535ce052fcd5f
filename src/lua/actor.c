#include "lua/actor.h"

#include <lauxlib.h>
#include <lualib.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/clock.h"
#include "core/token.h"
#include "lua/astate.h"
#include "lua/host.h"
#include "lua/lerror.h"

typedef struct {
  msrt_actor *cell;  /* the record's own reference */
  msrt_rt *rt;
  uint64_t id;
  char name[64];
  lua_State *L, *co;
  char *spec;
  size_t spec_len;
  msrt_bus_pending pend;           /* a publish blocked on full mailboxes */
  uint64_t inbox_sub;          /* <inbox>.> on the sys lane, 0 = none */
  char inbox[sizeof "_INBOX." + MSRT_TOKEN_LEN]; /* "_INBOX.<token>" */
  uint64_t *subs;              /* subscriptions to drop at release */
  size_t nsubs, capsubs;
  msrt_error err;              /* the last publish error */
  int blocked;                 /* ... was a hold for room (lerror.h) */
  msrt_inbox_node *exit_node;  /* carries the exit to the hub, made ahead */
  int exited;
  int aborted; /* creation failed: stop without ever booting */
  int unbooted; /* counted in `unbooted` below until boot ran */
} lactor;

/* actor_boot.lua reads envelopes through the FFI with its own declaration
 * of the struct: keep the two in step (these fail the build otherwise). */
_Static_assert(offsetof(msrt_envelope, flags) == 5 &&
                   offsetof(msrt_envelope, subject_len) == 8 &&
                   offsetof(msrt_envelope, payload_len) == 20 &&
                   offsetof(msrt_envelope, id) == 24 &&
                   offsetof(msrt_envelope, subject) == 48 &&
                   offsetof(msrt_envelope, headers) == 64 &&
                   offsetof(msrt_envelope, payload) == 72,
               "msrt_envelope layout differs from actor_boot.lua's cdef");

static struct {
  char *boot, *path, *cpath;
  size_t boot_len;
  /* test hook: MSRT_TEST_ROOM_WAKER_DELAY_MS (read at setup; 0 when unset)
   * makes each room waker wait that long before it runs, widening the
   * window in which its blocked sender may end (spec/actors_spec.lua) */
  unsigned room_waker_delay_ms;
} setup;

static char *dup_str(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = 0;
  }
  return d;
}

void msrt_lactor_setup(const char *boot, size_t boot_len, const char *path,
                       const char *cpath) {
  free(setup.boot), free(setup.path), free(setup.cpath);
  setup.boot = dup_str(boot, boot_len);
  setup.boot_len = boot_len;
  setup.path = dup_str(path, strlen(path));
  setup.cpath = dup_str(cpath, strlen(cpath));
  const char *delay = getenv("MSRT_TEST_ROOM_WAKER_DELAY_MS");
  setup.room_waker_delay_ms = delay ? (unsigned)strtoul(delay, NULL, 10) : 0;
}

msrt_code msrt_lactor_control(msrt_actor *cell, const char *ctl,
                              const char *text) {
  msrt_envelope *e = msrt_env_new(ctl, strlen(ctl), NULL, 0, NULL, 0, text,
                                  strlen(text), 1, MSRT_ENV_CONTROL, 0);
  if (!e) return MSRT_E_NOMEM;
  msrt_code rc = msrt_actor_push_sys(cell, e);
  msrt_env_unref(e);
  return rc;
}

/* Address space kept free for the rest of the host when an actor is made:
 * under a cap on it (RLIMIT_AS; mappings a container limits) a new state
 * is refused while this much cannot be mapped, so that running out lands
 * on msrt.actor (resource_exhausted), not on the hub's own next
 * allocation, which may be outside any protected call: 64 MiB (room for
 * the hub's state to grow and for a worker's mimalloc heap to map a new
 * segment, which it maps whole; 8 MiB was too little: measured with
 * spec/security/oom_spec.lua), and what
 * the actors made and not yet booted will take when they boot on their
 * workers (BOOT_BYTES each, about what actor_boot.lua adds to a state).
 * Mapped PROT_NONE and unmapped at once: two system calls, nothing
 * touched, nothing limited where the address space is not. */
#define HEADROOM ((size_t)64 << 20)
#define BOOT_BYTES ((size_t)64 << 10)
static atomic_long unbooted;

static int headroom(void) {
  size_t n = HEADROOM + (size_t)atomic_load(&unbooted) * BOOT_BYTES;
  void *p = mmap(NULL, n, PROT_NONE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return 0;
  munmap(p, n);
  return 1;
}

static void booted(lactor *la) {
  if (la->unbooted) atomic_fetch_sub(&unbooted, 1);
  la->unbooted = 0;
}

static int add_sub(lactor *la, uint64_t id) {
  if (la->nsubs == la->capsubs) {
    size_t cap = la->capsubs ? la->capsubs * 2 : 4;
    uint64_t *s = realloc(la->subs, cap * sizeof *s);
    if (!s) return -1;
    la->subs = s;
    la->capsubs = cap;
  }
  la->subs[la->nsubs++] = id;
  return 0;
}

msrt_actor *msrt_lactor_new(msrt_rt *rt, const char *name, const void *spec,
                            size_t spec_len, size_t capacity, size_t bytes,
                            msrt_overflow policy, const char *const *patterns,
                            size_t npatterns, const char *queue,
                            uint64_t *sub_ids, msrt_error *err) {
  size_t nlen = strlen(name);
  if (nlen == 0 || nlen >= sizeof ((lactor *)0)->name ||
      strpbrk(name, ".*> \t\r\n")) {
    msrt_error_set(err, MSRT_E_INVALID_ARG,
                   "actor name \"%s\" must be 1..63 characters and one "
                   "subject token (no '.', '*', '>' or spaces)", name);
    return NULL;
  }
  lactor *la = calloc(1, sizeof *la);
  if (!la || !(la->spec = malloc(spec_len ? spec_len : 1))) {
    free(la);
    msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
    return NULL;
  }
  memcpy(la->spec, spec, spec_len);
  la->spec_len = spec_len;
  la->rt = rt;
  memcpy(la->name, name, nlen + 1);
  /* The state is made here, on the caller's thread, so that running out
   * of memory is this call's error (the rest of boot runs on a worker). */
  la->L = !headroom() ? NULL
                      : msrt_astate_new(atomic_load(&rt->gc_pause),
                                        atomic_load(&rt->gc_stepmul),
                                        setup.path, setup.cpath);
  la->exit_node = msrt_inbox_node_new();
  la->cell = la->L && la->exit_node
                 ? msrt_actor_new(rt->sched, la, capacity, policy) : NULL;
  if (!la->cell) {
    if (la->L) lua_close(la->L);
    msrt_inbox_node_free(la->exit_node);
    free(la->spec);
    free(la);
    if (rt->stopped)
      msrt_error_set(err, MSRT_E_CLOSED, "the runtime is stopping");
    else
      msrt_error_set(err, MSRT_E_RESOURCE_EXHAUSTED, "actor %s: out of "
                     "memory making its Lua state", name);
    return NULL;
  }
  msrt_actor_set_byte_bound(la->cell, bytes);
  la->id = msrt_actor_id(la->cell);
  la->unbooted = 1;
  atomic_fetch_add(&unbooted, 1);
  /* Subscribed before it starts, so nothing published after this call
   * returns can miss it. */
  for (size_t i = 0; i < npatterns; i++) {
    uint64_t sid;
    if (msrt_bus_subscribe(rt->bus, patterns[i], strlen(patterns[i]), queue,
                           queue ? strlen(queue) : 0, msrt_ep_actor(la->cell),
                           &sid, err) != MSRT_E_OK ||
        add_sub(la, sid) != 0) {
      la->aborted = la->exited = 1;
      msrt_actor_stop(la->cell); /* its last turn only releases it */
      return NULL;
    }
    if (sub_ids) sub_ids[i] = sid;
  }
  msrt_actor *cell = la->cell;
  msrt_actor_ref(cell); /* the caller's */
  /* Once started, a worker may run the actor, see it fail and free `la`
   * before this returns: only the cell (referenced) may be used now. */
  msrt_lactor_control(cell, MSRT_CTL_START, "");
  return cell;
}

/* The reason travels as a control message, not in the record: the hub may
 * call this after the record is gone (only the cell is referenced). */
void msrt_lactor_stop(msrt_actor *cell, const char *reason) {
  msrt_lactor_control(cell, MSRT_CTL_STOP, reason);
  msrt_actor_stop(cell);
}

/* ---- functions the actor's Lua calls (upvalue 1: the record) ---------- */

static lactor *self(lua_State *L) {
  return lua_touserdata(L, lua_upvalueindex(1));
}

/* pop() -> nil | flags, subject, reply, payload, id, priority, headers */
static int a_pop(lua_State *L) {
  msrt_envelope *e = msrt_actor_pop(self(L)->cell);
  if (!e) return 0;
  lua_pushinteger(L, e->flags);
  lua_pushlstring(L, e->subject, e->subject_len);
  if (e->reply) lua_pushlstring(L, e->reply, e->reply_len);
  else lua_pushnil(L);
  lua_pushlstring(L, (const char *)e->payload, e->payload_len);
  lua_pushnumber(L, (lua_Number)e->id);
  lua_pushinteger(L, e->priority);
  if (e->headers_len)
    lua_pushlstring(L, (const char *)e->headers, e->headers_len);
  else
    lua_pushnil(L);
  msrt_env_unref(e);
  return 7;
}

/* The publish both paths share: >= 0 delivered endpoints, or -1: an error
 * in la->err, or, with la->blocked set, held for room in full `block`
 * mailboxes (then wait_room/retry). */
static long publish(lactor *la, const char *s, size_t slen, const char *r,
                    size_t rlen, const void *p, size_t plen, int prio,
                    const char *h, size_t hlen, double ttl_ms) {
  la->blocked = 0;
  msrt_envelope *e = msrt_bus_make(la->rt->bus, s, slen, r, rlen, h, hlen, p, plen,
                                  prio, 0, &la->err);
  if (!e) return -1;
  msrt_bus_reply_ttl(e, ttl_ms);
  size_t delivered;
  msrt_code rc = msrt_bus_publish(la->rt->bus, e, &delivered, &la->pend, &la->err);
  msrt_env_unref(e);
  la->blocked = rc == MSRT_E_MAILBOX_FULL && la->pend.n;
  if (rc != MSRT_E_OK) return -1;
  return (long)delivered;
}

/* The error of the last publish as Lua sees it: nil, err (lerror.h; a
 * blocked err when it was held for room). */
static int publish_err(lua_State *L, lactor *la) {
  return la->blocked ? msrt_lua_blocked(L) : msrt_lua_fail_err(L, &la->err);
}

/* publish(subject, payload, reply, priority, headers, reply_ttl_ms)
 *   -> delivered | nil, err (blocked: then wait_room/retry)
 * reply_ttl_ms: a request's timeout (msrt_bus_reply_ttl). */
static int a_publish(lua_State *L) {
  lactor *la = self(L);
  size_t slen, plen, rlen = 0;
  const char *s = luaL_checklstring(L, 1, &slen);
  const char *p = luaL_checklstring(L, 2, &plen);
  const char *r = luaL_optlstring(L, 3, NULL, &rlen);
  int prio = msrt_lua_priority(L, 4);
  size_t hlen = 0;
  const char *h = luaL_optlstring(L, 5, NULL, &hlen);
  long n = publish(la, s, slen, r, rlen, p, plen, prio, h, hlen,
                   luaL_optnumber(L, 6, 0));
  if (n < 0) return publish_err(L, la);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

/* undecodable(subject, reason): this actor could not decode a copy it
 * popped (msrt_bus_undecodable, naming the actor by id). */
static int a_undecodable(lua_State *L) {
  lactor *la = self(L);
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  char who[32];
  snprintf(who, sizeof who, "actor %llu", (unsigned long long)la->id);
  msrt_bus_undecodable(la->rt->bus, s, len, luaL_checkstring(L, 2), who);
  return 0;
}

/* last_error() -> nil, err of the FFI path's last -1, as publish gives */
static int a_last_error(lua_State *L) { return publish_err(L, self(L)); }

/* self() -> the record, as the FFI functions' first argument */
static int a_self(lua_State *L) {
  lua_pushlightuserdata(L, self(L));
  return 1;
}

/* ---- the FFI path (declared again in actor_boot.lua's ffi.cdef): the
 * per-message calls, which LuaJIT can compile into a handler's trace where
 * a lua_CFunction call would stop it; the payload is decoded from and
 * encoded into string.buffers in place, without making a Lua string. ---- */

msrt_envelope *msrt_lactor_ffi_pop(void *la) {
  return msrt_actor_pop(((lactor *)la)->cell);
}

void msrt_lactor_ffi_unref(msrt_envelope *e) { msrt_env_unref(e); }

long msrt_lactor_ffi_publish(void *la, const char *s, size_t slen,
                             const char *r, size_t rlen, const void *p,
                             size_t plen, int prio, const char *h,
                             size_t hlen, double ttl_ms) {
  return publish(la, s, slen, r, rlen, p, plen, prio, h, hlen, ttl_ms);
}

/* The waker runs on the thread that made room, maybe while this actor
 * ends: the registration holds a reference on the cell, released by the
 * waker or, when the registration is cancelled first, by unwait_cell. */
static void room_waker(void *ud) {
  if (setup.room_waker_delay_ms) {
    struct timespec ts = {(time_t)(setup.room_waker_delay_ms / 1000),
                          (long)(setup.room_waker_delay_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
  }
  msrt_lactor_control(ud, MSRT_CTL_ROOM, "");
  msrt_actor_unref(ud);
}

static void unwait_cell(void *ud) { msrt_actor_unref(ud); }

/* wait_room() -> true when a _ROOM control message will come, false when
 * there is room now (retry). */
static int a_wait_room(lua_State *L) {
  lactor *la = self(L);
  msrt_actor_ref(la->cell);
  int rc = msrt_bus_pending_wait(&la->pend, room_waker, unwait_cell, la->cell);
  if (rc != MSRT_WAIT_PENDING) msrt_actor_unref(la->cell);
  lua_pushboolean(L, rc == MSRT_WAIT_PENDING);
  return 1;
}

/* retry() -> delivered | nil, blocked err | nil, err: closed, or
 *   mailbox_full (`error` mailboxes refused copies) */
static int a_retry(lua_State *L) {
  lactor *la = self(L);
  if (msrt_actor_closed(la->cell)) {
    msrt_bus_pending_clear(la->rt->bus, &la->pend);
    return msrt_lua_fail(L, MSRT_E_CLOSED, "the actor is stopping");
  }
  if (msrt_bus_pending_retry(la->rt->bus, &la->pend) == MSRT_E_MAILBOX_FULL)
    return msrt_lua_blocked(L);
  if (msrt_bus_pending_refused(&la->pend, &la->err))
    return msrt_lua_fail_err(L, &la->err);
  lua_pushinteger(L, (lua_Integer)la->pend.delivered);
  return 1;
}

/* inbox() -> "_INBOX.<token>": this actor's inbox prefix, random
 * (core/token.h), made and subscribed (<prefix>.> on the sys lane) once;
 * each request adds a random token of its own. */
static int a_inbox(lua_State *L) {
  lactor *la = self(L);
  char *prefix = la->inbox;
  size_t n = sizeof "_INBOX." - 1 + MSRT_TOKEN_LEN;
  if (!la->inbox_sub) {
    memcpy(prefix, "_INBOX.", 7);
    if (msrt_token(prefix + 7) != 0)
      return msrt_lua_fail(L, MSRT_E_INTERNAL, "no randomness for an inbox");
    char pattern[sizeof la->inbox + 2];
    int pn = snprintf(pattern, sizeof pattern, "%s.>", prefix);
    msrt_error err;
    if (msrt_bus_subscribe(la->rt->bus, pattern, (size_t)pn, NULL, 0,
                           msrt_ep_sys(la->cell), &la->inbox_sub,
                           &err) != MSRT_E_OK)
      return msrt_lua_fail_err(L, &err);
    add_sub(la, la->inbox_sub);
  }
  lua_pushlstring(L, prefix, n);
  return 1;
}

/* token() -> 22 random characters for a request's inbox | nil, err */
static int a_token(lua_State *L) {
  char t[MSRT_TOKEN_LEN + 1];
  if (msrt_token(t) != 0)
    return msrt_lua_fail(L, MSRT_E_INTERNAL, "no randomness for an inbox token");
  lua_pushlstring(L, t, MSRT_TOKEN_LEN);
  return 1;
}

/* subscribe(pattern, queue) -> sub id | nil, err */
static int a_subscribe(lua_State *L) {
  lactor *la = self(L);
  size_t plen, qlen = 0;
  const char *p = luaL_checklstring(L, 1, &plen);
  const char *q = luaL_optlstring(L, 2, NULL, &qlen);
  uint64_t id;
  msrt_error err;
  if (msrt_bus_subscribe(la->rt->bus, p, plen, q, qlen,
                         msrt_ep_actor(la->cell), &id, &err) != MSRT_E_OK)
    return msrt_lua_fail_err(L, &err);
  add_sub(la, id);
  lua_pushnumber(L, (lua_Number)id);
  return 1;
}

/* Whole milliseconds no shorter than ms (a fraction rounds up: a delay
 * must not end early), at most ~31 years. */
static long long ceil_ms(lua_Number ms) {
  return ms > 1e12 ? 1000000000000LL : (long long)ceil(ms);
}

/* timer(timer_id, ms, repeat_ms): the hub fires _TIMER control messages
 * with the timer id; ms < 0 cancels. The delay counts from this call (its
 * CLOCK_MONOTONIC time goes along), not from when the hub reads it. */
static int a_timer(lua_State *L) {
  lactor *la = self(L);
  char text[128];
  snprintf(text, sizeof text, "%lld %lld %lld %llu",
           (long long)luaL_checkinteger(L, 1), ceil_ms(luaL_checknumber(L, 2)),
           ceil_ms(luaL_optnumber(L, 3, 0)),
           (unsigned long long)msrt_now_ns());
  msrt_envelope *e = msrt_env_new("t", 1, NULL, 0, NULL, 0, text, strlen(text),
                                  1, MSRT_ENV_CONTROL, 0);
  if (!e) return luaL_error(L, "out of memory");
  msrt_actor_ref(la->cell);
  msrt_inbox_item it = {MSRT_IN_TIMER, la->id, e, la->cell};
  if (msrt_bus_to_hub(la->rt->bus, it) != 0) msrt_actor_unref(la->cell);
  return 0;
}

static int a_set_waiting(lua_State *L) {
  msrt_actor_set_waiting(self(L)->cell, lua_toboolean(L, 1));
  return 0;
}

/* closed() -> true once the actor was asked to stop */
static int a_closed(lua_State *L) {
  lua_pushboolean(L, msrt_actor_closed(self(L)->cell));
  return 1;
}

/* stop(reason): the actor stops itself after this turn. */
static int a_stop(lua_State *L) {
  msrt_lactor_stop(self(L)->cell, luaL_optstring(L, 1, "normal"));
  return 0;
}

static int a_log(lua_State *L) {
  lactor *la = self(L);
  fprintf(stderr, "%s [%s#%llu] %s\n", luaL_checkstring(L, 1), la->name,
          (unsigned long long)la->id, luaL_checkstring(L, 2));
  return 0;
}

static int a_now_ms(lua_State *L) {
  lua_pushnumber(L, (lua_Number)msrt_now_ns() / 1e6);
  return 1;
}

/* started(): tell the hub that init has returned (OTP's start_link
 * returns then); the hub's supervisor starts the next child. */
static int a_started(lua_State *L) {
  lactor *la = self(L);
  msrt_inbox_item it = {MSRT_IN_STARTED, la->id, NULL, NULL};
  msrt_bus_to_hub(la->rt->bus, it);
  return 0;
}

static const luaL_Reg actor_fns[] = {
  {"pop", a_pop}, {"publish", a_publish}, {"wait_room", a_wait_room},
  {"retry", a_retry}, {"inbox", a_inbox}, {"subscribe", a_subscribe},
  {"timer", a_timer}, {"set_waiting", a_set_waiting}, {"closed", a_closed},
  {"stop", a_stop}, {"log", a_log}, {"now_ms", a_now_ms}, {"jit_on", msrt_astate_jit},
  {"last_error", a_last_error}, {"self", a_self}, {"started", a_started},
  {"undecodable", a_undecodable}, {"token", a_token},
  {NULL, NULL}};

/* ---- the actor's state ------------------------------------------------ */

/* boot's body, under lua_cpcall (an allocation failing raises). */
static int boot_state(lua_State *L) {
  lactor *la = lua_touserdata(L, 1);
  if (luaL_loadbuffer(L, setup.boot, setup.boot_len, "=actor_boot"))
    return lua_error(L);
  lua_newtable(L);
  lua_pushlightuserdata(L, la);
  luaL_openlib(L, NULL, actor_fns, 1);
  msrt_lua_open_errors(L);
  lua_pushlstring(L, la->spec, la->spec_len);
  lua_pushnumber(L, (lua_Number)la->id);
  lua_call(L, 3, 3);
  lua_setfield(L, LUA_REGISTRYINDEX, "msrt.on_crash");
  lua_setfield(L, LUA_REGISTRYINDEX, "msrt.exit_record");
  lua_State *co = lua_newthread(L);
  lua_setfield(L, LUA_REGISTRYINDEX, "msrt.actor.co");
  lua_xmove(L, co, 1); /* the loop function */
  la->co = co;
  return 0;
}

/* Run actor_boot.lua in the state and make the loop coroutine; returns 0,
 * or -1 with the error message on top of la->L. */
static int boot(lactor *la) {
  booted(la);
  if (lua_cpcall(la->L, boot_state, la) != 0) return -1;
  free(la->spec);
  la->spec = NULL;
  return 0;
}

/* An exit as the state describes it: for a crash (from != NULL, the
 * error message msg on its stack) the reason is msg with from's traceback
 * as on_crash shapes it; the payload is the exit record's string.buffer
 * encoding. Made under lua_cpcall: a state that is out of memory leaves
 * the plain reason (the hub accepts both). The strings made are anchored
 * in the registry until the state closes. */
typedef struct {
  lua_State *from;
  const char *msg;
  int level, normal;
  const char *reason, *payload;
  size_t plen;
} exit_job;

static int describe_exit(lua_State *L) {
  exit_job *j = lua_touserdata(L, 1);
  if (j->from) {
    luaL_traceback(L, j->from, j->msg, j->level);
    lua_getfield(L, LUA_REGISTRYINDEX, "msrt.on_crash");
    if (lua_isfunction(L, -1)) {
      lua_pushvalue(L, -2);
      if (lua_pcall(L, 1, 1, 0) == 0 && lua_isstring(L, -1)) lua_replace(L, -2);
      else lua_pop(L, 1);
    } else {
      lua_pop(L, 1);
    }
    j->reason = lua_tostring(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "msrt.exit_reason");
  }
  lua_getfield(L, LUA_REGISTRYINDEX, "msrt.exit_record");
  if (!lua_isfunction(L, -1)) return 0;
  lua_pushstring(L, j->reason);
  lua_pushboolean(L, j->normal);
  if (lua_pcall(L, 2, 1, 0) != 0 || !lua_isstring(L, -1)) return 0;
  j->payload = lua_tolstring(L, -1, &j->plen);
  lua_setfield(L, LUA_REGISTRYINDEX, "msrt.exit_payload");
  return 0;
}

/* Publish the exit record on msrt.actor.<name>.exit and hand it to the
 * hub. reason: "normal", "shutdown", or (job.from set) the crash's message,
 * which becomes the message with its traceback. */
static void report_exit_job(lactor *la, exit_job *j) {
  if (la->exited) return;
  la->exited = 1;
  char subject[96];
  int n = snprintf(subject, sizeof subject, "msrt.actor.%s.exit", la->name);
  lua_State *L = la->L;
  if (L && lua_cpcall(L, describe_exit, j) != 0) {
    lua_pop(L, 1); /* out of memory: the plain reason */
    j->payload = NULL;
  }
  if (!j->reason) j->reason = j->msg ? j->msg : "out of memory";
  const char *payload = j->payload ? j->payload : j->reason;
  size_t plen = j->payload ? j->plen : strlen(j->reason);
  uint8_t flags = j->payload ? MSRT_ENV_PAYLOAD_BUFFER : 0;
  msrt_envelope *e = msrt_env_new(subject, (size_t)n, NULL, 0, NULL, 0,
                                  payload, plen, 1, flags, 0);
  size_t delivered;
  if (e) msrt_bus_publish(la->rt->bus, e, &delivered, NULL, NULL);
  /* no record (out of memory): the hub still hears of the exit, whose
   * waiters would otherwise wait forever (bus/bus.h MSRT_IN_EXIT) */
  la->exit_node->item = (msrt_inbox_item){
      MSRT_IN_EXIT, la->id, e, e ? NULL : (void *)(uintptr_t)(j->normal ? 2 : 1)};
  msrt_inbox_node *node = la->exit_node;
  la->exit_node = NULL;
  if (msrt_inbox_push_node(la->rt->inbox, node) != 0) msrt_env_unref(e);
}

static void report_exit(lactor *la, const char *reason, int normal) {
  exit_job j = {.reason = reason, .normal = normal};
  report_exit_job(la, &j);
}

/* A Lua error in boot, init or handle: the reason is the message with its
 * traceback; the actor's terminate hears it (OTP gen_server does so). */
static msrt_run_result fail(lactor *la, lua_State *from) {
  const char *msg = lua_tostring(from, -1); /* anchored on from's stack */
  exit_job j = {.from = from, .level = from == la->L ? 1 : 0,
                .msg = msg ? msg : "(error object is not a string)"};
  report_exit_job(la, &j);
  return MSRT_RUN_STOPPED;
}

msrt_run_result msrt_lactor_run(msrt_actor *a, int budget, void *ud,
                                int worker) {
  lactor *la = ud;
  if (la->aborted) return MSRT_RUN_STOPPED;
  msrt_rt_turn(la->rt, worker, la->id);
  msrt_run_result res = MSRT_RUN_STOPPED;
  if (!la->co && boot(la) != 0) {
    res = fail(la, la->L);
  } else {
    lua_pushinteger(la->co, budget);
    int rc = lua_resume(la->co, 1);
    if (rc == LUA_YIELD) {
      const char *what = lua_tostring(la->co, -1);
      res = what && what[0] == 'w' ? MSRT_RUN_WAITING : MSRT_RUN_IDLE;
      lua_settop(la->co, 0);
    } else if (rc == 0) {
      const char *reason = lua_tostring(la->co, -1);
      if (!reason) reason = "normal";
      int normal = !strcmp(reason, "normal") || !strcmp(reason, "shutdown");
      report_exit(la, reason, normal);
    } else {
      res = fail(la, la->co);
    }
  }
  msrt_rt_turn(la->rt, worker, 0);
  return res;
}

void msrt_lactor_release(msrt_actor *a, void *ud) {
  lactor *la = ud;
  booted(la); /* never booted: stopped first */
  if (!la->exited) report_exit(la, "shutdown", 1);
  for (size_t i = 0; i < la->nsubs; i++) msrt_bus_unsubscribe(la->rt->bus, la->subs[i]);
  free(la->subs);
  msrt_bus_pending_clear(la->rt->bus, &la->pend);
  if (la->L) lua_close(la->L);
  msrt_inbox_node_free(la->exit_node);
  free(la->spec);
  msrt_actor_unref(la->cell);
  free(la);
}
