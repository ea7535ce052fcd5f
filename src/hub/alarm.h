/* Alarms: the timers other threads ask the hub for on behalf of an owner
 * (an actor's ctx:after and ctx:every, lua/msrt/actor_boot.lua). Each is
 * a hub timer due at a time measured where it was asked for (hub/timer.h:
 * never early, however long the request waited in the hub's inbox), once
 * or repeating. Each holds one reference of its owner, given back through
 * the class's release when the alarm ends: it fired and does not repeat,
 * its fire failed (the owner is gone), it was cancelled, or the set was
 * freed. The timers are unreferenced: owners keep the hub alive, not their
 * alarms.
 *
 * Thread-safety: the loop's thread only. */
#ifndef MSRT_HUB_ALARM_H
#define MSRT_HUB_ALARM_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/error.h"

typedef struct {
  /* Alarm id of owner is due: MSRT_E_OK keeps a repeating alarm, any
   * other code ends it. */
  msrt_code (*fire)(void *owner, uint64_t id);
  /* Give back the reference an alarm held. */
  void (*release)(void *owner);
} msrt_alarm_class;

typedef struct msrt_alarms msrt_alarms;

/* An empty set on loop; cls is borrowed (static). NULL when out of
 * memory. */
msrt_alarms *msrt_alarms_new(uv_loop_t *loop, const msrt_alarm_class *cls);

/* Set alarm id of owner (owner_id names the owner for cancel) due at
 * due_ns on uv_hrtime's clock (CLOCK_MONOTONIC ns), then every repeat_ms
 * (0: once). Takes a reference of owner: released when the alarm ends, or
 * at once when it cannot be set. Returns MSRT_E_OK or MSRT_E_NOMEM. */
msrt_code msrt_alarms_set(msrt_alarms *a, void *owner, uint64_t owner_id,
                          uint64_t id, uint64_t due_ns, uint64_t repeat_ms);

/* End alarm id of owner_id. Returns MSRT_E_OK or MSRT_E_NOT_FOUND (ended
 * already, or never set). */
msrt_code msrt_alarms_cancel(msrt_alarms *a, uint64_t owner_id, uint64_t id);

/* The alarms set and not yet ended. */
size_t msrt_alarms_count(const msrt_alarms *a);

/* End every alarm (each owner released as its timer closes, on a later
 * loop iteration) and free the set. NULL is ignored. */
void msrt_alarms_free(msrt_alarms *a);

#endif
