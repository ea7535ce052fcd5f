/* msrt.core.metrics: the scheduler's and the router's counters as one
 * table (msrt.metrics, lua/msrt/init.lua). Hub thread only. */
#include "lua/host.h"
#include "lua/lrt.h"

static void push_worker(lua_State *L, const msrt_worker_stats *w) {
  lua_createtable(L, 0, 8);
  msrt_lua_set_num(L, "handled", (double)w->handled);
  msrt_lua_set_num(L, "turns", (double)w->turns);
  msrt_lua_set_num(L, "parks", (double)w->parks);
  msrt_lua_set_num(L, "wakes", (double)w->wakes);
  msrt_lua_set_num(L, "steals", (double)w->steals);
  msrt_lua_set_num(L, "declined", (double)w->declined);
  msrt_lua_set_num(L, "hop_ns", (double)w->hop_ns);
  msrt_lua_set_num(L, "gave_way", (double)w->gave_way);
}

static void push_stats(lua_State *L, const msrt_router_stats *rs) {
  for (int i = 0; i < MSRT_STAT__COUNT; i++)
    msrt_lua_set_num(L, msrt_stat_name((msrt_stat)i), (double)rs->v[i]);
  msrt_lua_set_num(L, "dropped", (double)rs->dropped);
}

/* The router's counters: the totals, and per subject class under
 * `classes` (one read, so the totals are the classes' sum). */
static void push_router(lua_State *L, msrt_router *r) {
  msrt_class_stats cs[MSRT_CLASS_MAX];
  size_t n = msrt_account_classes(msrt_router_account(r), cs, MSRT_CLASS_MAX);
  msrt_router_stats total = {0};
  lua_createtable(L, 0, MSRT_STAT__COUNT + 3);
  lua_createtable(L, 0, (int)n);
  for (size_t c = 0; c < n; c++) {
    for (int i = 0; i < MSRT_STAT__COUNT; i++) total.v[i] += cs[c].stats.v[i];
    total.dropped += cs[c].stats.dropped;
    lua_createtable(L, 0, MSRT_STAT__COUNT + 1);
    push_stats(L, &cs[c].stats);
    lua_setfield(L, -2, cs[c].name);
  }
  lua_setfield(L, -2, "classes");
  push_stats(L, &total);
  msrt_lua_set_num(L, "subscriptions", (double)msrt_router_sub_count(r));
}

/* metrics() -> table (see msrt.metrics) */
static int l_metrics(lua_State *L) {
  msrt_rt *rt = msrt_lua_rt_opt(L);
  lua_newtable(L);
  if (!rt) return 1;
  msrt_worker_stats per[256];
  msrt_sched_stats st;
  msrt_sched_stats_get(rt->sched, &st, per);
  msrt_lua_set_num(L, "workers", (double)st.workers);
  msrt_lua_set_num(L, "actors", (double)st.actors);
  msrt_lua_set_num(L, "runnable", (double)st.runnable);
  msrt_lua_set_num(L, "parked", (double)st.parked);
  push_worker(L, &st.total);
  lua_setfield(L, -2, "total");
  lua_createtable(L, (int)st.workers, 0);
  for (size_t i = 0; i < st.workers; i++) {
    push_worker(L, &per[i]);
    lua_rawseti(L, -2, (int)i + 1);
  }
  lua_setfield(L, -2, "per_worker");
  lua_createtable(L, 0, 3);
  msrt_lua_set_num(L, "drop_oldest", (double)st.drops_oldest);
  msrt_lua_set_num(L, "drop_newest", (double)st.drops_newest);
  msrt_lua_set_num(L, "refused_full", (double)st.refused_full);
  lua_setfield(L, -2, "drops");
  push_router(L, rt->router);
  lua_setfield(L, -2, "router");
  msrt_lua_set_num(L, "hub_inbox", (double)msrt_inbox_depth(rt->inbox));
  return 1;
}

void msrt_lua_open_metrics(lua_State *L) {
  lua_pushcfunction(L, l_metrics);
  lua_setfield(L, -2, "metrics");
}
