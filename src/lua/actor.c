#include "lua/actor_int.h"

#include <lauxlib.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "core/mem.h"
#include "lua/astate.h"
#include "lua/lerror.h"

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
  char *boot, *more, *path, *cpath;
  size_t boot_len, more_len;
  /* test hook: MSRT_TEST_ROOM_WAKER_DELAY_MS (read at setup; 0 when unset)
   * makes each room waker wait that long before it runs, widening the
   * window in which its blocked sender may end (spec/actors_spec.lua) */
  unsigned room_waker_delay_ms;
} setup;

unsigned msrt_lactor_room_waker_delay_ms(void) {
  return setup.room_waker_delay_ms;
}

static char *dup_str(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = 0;
  }
  return d;
}

void msrt_lactor_setup(const char *boot, size_t boot_len, const char *more,
                       size_t more_len, const char *path, const char *cpath) {
  free(setup.boot), free(setup.more), free(setup.path), free(setup.cpath);
  setup.boot = dup_str(boot, boot_len);
  setup.boot_len = boot_len;
  setup.more = dup_str(more, more_len);
  setup.more_len = more_len;
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
 * under a cap on it (RLIMIT_AS) a new state is refused while this much
 * cannot be mapped, so that running out lands on msrt.actor
 * (resource_exhausted), not on the hub's own next allocation, which may be
 * outside any protected call: 64 MiB (room for the hub's state to grow
 * and for a worker's mimalloc heap to map a new segment, which it maps
 * whole; 8 MiB was too little: measured with spec/security/oom_spec.lua),
 * and what the actors made and not yet booted will take when they boot on
 * their workers (BOOT_BYTES each, about what actor_boot.lua adds to a
 * state). Mapped PROT_NONE and unmapped at once: nothing touched.
 * Without a cap (RLIMIT_AS unlimited, the common case) nothing can refuse
 * a PROT_NONE, MAP_NORESERVE mapping of this size short of the whole
 * address space (strict overcommit does not charge it either), so the
 * probe is skipped: one getrlimit instead of an mmap and a munmap, which
 * take the address space's lock for writing and cost the hub ~4 us a
 * spawn on the 2-vCPU VM (docs/performance.md, spawn rate). */
#define HEADROOM ((size_t)64 << 20)
#define BOOT_BYTES ((size_t)64 << 10)
static atomic_long unbooted;

static int headroom(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur == RLIM_INFINITY) return 1;
  size_t n = HEADROOM + (size_t)atomic_load(&unbooted) * BOOT_BYTES;
  void *p = mmap(NULL, n, PROT_NONE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return 0;
  munmap(p, n);
  return 1;
}

/* A fleet that grows takes its states' fresh pages 2 MiB at a time
 * (core/mem.h msrt_mem_state_bulk): a burst of spawns then pays a page
 * fault per 2 MiB instead of per 4 KiB (docs/performance.md, spawn
 * rate). On once BULK_MIN states are live (a few actors keep 4 KiB pages:
 * a small host does not grow by 2 MiB per thread); off as soon as the
 * fleet shrinks by BULK_SLACK or a sixteenth of its peak, so khugepaged
 * cannot fill a shrunk fleet's freed pages back in; on again once it has
 * grown BULK_MIN past its lowest since then. Counted at each state made and
 * closed (one atomic add); the switch is under a lock, which reads the
 * count again, so the last switch made is the one the count asks for. */
#define BULK_MIN 256
#define BULK_SLACK 64
static atomic_long live_states, bulk_peak, bulk_next = BULK_MIN;
static atomic_int bulk_on;
static pthread_mutex_t bulk_lock = PTHREAD_MUTEX_INITIALIZER;

static long bulk_floor(long peak) {
  long slack = peak / 16 > BULK_SLACK ? peak / 16 : BULK_SLACK;
  return peak - slack;
}

static void bulk_switch(void) {
  pthread_mutex_lock(&bulk_lock);
  long n = atomic_load(&live_states), peak = atomic_load(&bulk_peak);
  if (atomic_load(&bulk_on) && n <= bulk_floor(peak)) {
    atomic_store(&bulk_on, 0);
    atomic_store(&bulk_next, n + BULK_MIN);
    msrt_mem_state_bulk(0);
  } else if (!atomic_load(&bulk_on) && n >= atomic_load(&bulk_next)) {
    atomic_store(&bulk_on, 1);
    atomic_store(&bulk_peak, n);
    atomic_store(&bulk_next, LONG_MAX);
    msrt_mem_state_bulk(1);
  }
  pthread_mutex_unlock(&bulk_lock);
}

static void state_made(void) {
  long n = atomic_fetch_add(&live_states, 1) + 1;
  if (n > atomic_load_explicit(&bulk_peak, memory_order_relaxed))
    atomic_store_explicit(&bulk_peak, n, memory_order_relaxed);
  if (n >= atomic_load_explicit(&bulk_next, memory_order_relaxed))
    bulk_switch();
}

static void state_closed(lua_State *L) {
  lua_close(L);
  msrt_mem_state_freed();
  long n = atomic_fetch_sub(&live_states, 1) - 1;
  if (!atomic_load_explicit(&bulk_on, memory_order_relaxed)) {
    if (n + BULK_MIN < atomic_load_explicit(&bulk_next, memory_order_relaxed))
      atomic_store_explicit(&bulk_next, n + BULK_MIN, memory_order_relaxed);
  } else if (n <= bulk_floor(atomic_load_explicit(&bulk_peak, memory_order_relaxed))) {
    bulk_switch();
  }
}

static void booted(lactor *la) {
  if (la->unbooted) atomic_fetch_sub(&unbooted, 1);
  la->unbooted = 0;
}

msrt_code msrt_lactor_add_sub(lactor *la, uint64_t id) {
  if (la->nsubs == la->capsubs) {
    size_t cap = la->capsubs ? la->capsubs * 2 : 4;
    uint64_t *s = realloc(la->subs, cap * sizeof *s);
    if (!s) return MSRT_E_NOMEM;
    la->subs = s;
    la->capsubs = cap;
  }
  la->subs[la->nsubs++] = id;
  return MSRT_E_OK;
}

msrt_code msrt_lactor_drop_sub(lactor *la, uint64_t id) {
  size_t i = 0;
  while (i < la->nsubs && la->subs[i] != id) i++;
  if (i == la->nsubs || id == la->inbox_sub) return MSRT_E_NOT_FOUND;
  msrt_code rc = msrt_bus_unsubscribe(la->rt->bus, id);
  if (rc != MSRT_E_OK) return rc;
  la->subs[i] = la->subs[--la->nsubs];
  return MSRT_E_OK;
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
  if (la->L) state_made();
  la->exit_node = msrt_inbox_node_new();
  la->cell = la->L && la->exit_node
                 ? msrt_actor_new(rt->sched, la, capacity, policy) : NULL;
  if (!la->cell) {
    if (la->L) state_closed(la->L);
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
        msrt_lactor_add_sub(la, sid) != 0) {
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

/* ---- the actor's state ------------------------------------------------ */

int msrt_lactor_more(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  luaL_openlib(L, NULL, msrt_lactor_more_fns, 1);
  if (luaL_loadbuffer(L, setup.more, setup.more_len, "=actor_ctx"))
    return lua_error(L);
  return 1;
}

/* boot's body, under lua_cpcall (an allocation failing raises). */
static int boot_state(lua_State *L) {
  lactor *la = lua_touserdata(L, 1);
  if (luaL_loadbuffer(L, setup.boot, setup.boot_len, "=actor_boot"))
    return lua_error(L);
  lua_newtable(L);
  lua_pushlightuserdata(L, la);
  luaL_openlib(L, NULL, msrt_lactor_fns, 1);
  lua_pushcfunction(L, msrt_lua_error); /* (is_error: no actor needs it) */
  lua_setfield(L, -2, "error");
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
  int first = !la->co;
  if (first && boot(la) != 0) {
    res = fail(la, la->L);
  } else {
    lua_pushinteger(la->co, budget);
    int rc = lua_resume(la->co, 1);
    if (rc == LUA_YIELD) {
      const char *what = lua_tostring(la->co, -1);
      /* "waiting", "more" (giving way: msrt_lactor_ffi_give_way), "idle" */
      res = !what                ? MSRT_RUN_IDLE
            : what[0] == 'w'     ? MSRT_RUN_WAITING
            : what[0] == 'm'     ? MSRT_RUN_YIELDED
                                 : MSRT_RUN_IDLE;
      lua_settop(la->co, 0);
      /* What boot leaves behind (actor_boot.lua's main chunk and module
       * loader, the spec, the stacks grown by boot and init) would stay in
       * an idle actor forever (it allocates nothing more, so no GC step
       * runs): one cycle now, a step from the pause to the next pause (a
       * full collect would sweep twice). docs/performance.md, RSS per
       * idle actor: 3.3 KiB for ~53k instructions per spawn. */
      if (first) lua_gc(la->L, LUA_GCSTEP, 1 << 20);
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
  if (la->pend) msrt_bus_pending_clear(la->rt->bus, la->pend);
  free(la->pend);
  if (la->L) state_closed(la->L);
  msrt_inbox_node_free(la->exit_node);
  free(la->spec);
  msrt_actor_unref(la->cell);
  free(la);
}
