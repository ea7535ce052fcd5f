#include "hub/alarm.h"

#include <stdlib.h>

#include "hub/hub.h"
#include "hub/timer.h"

typedef struct entry {
  unsigned magic; /* MSRT_HANDLE_MAGIC: the timer's data, not luv's */
  uv_timer_t t;
  const msrt_alarm_class *cls; /* a closing entry outlives its set */
  msrt_alarms *set;
  void *owner; /* one reference */
  uint64_t owner_id, id;
  struct entry *prev, *next;
} entry;

struct msrt_alarms {
  uv_loop_t *loop;
  const msrt_alarm_class *cls;
  entry *head;
  size_t n;
};

msrt_alarms *msrt_alarms_new(uv_loop_t *loop, const msrt_alarm_class *cls) {
  msrt_alarms *a = calloc(1, sizeof *a);
  if (a) *a = (msrt_alarms){loop, cls, NULL, 0};
  return a;
}

static void on_closed(uv_handle_t *h) {
  entry *t = h->data;
  t->cls->release(t->owner);
  free(t);
}

static void end(entry *t) {
  msrt_alarms *a = t->set;
  if (t->prev) t->prev->next = t->next;
  else a->head = t->next;
  if (t->next) t->next->prev = t->prev;
  a->n--;
  uv_close((uv_handle_t *)&t->t, on_closed);
}

static void on_due(uv_timer_t *h) {
  entry *t = h->data;
  if (t->cls->fire(t->owner, t->id) != MSRT_E_OK ||
      !uv_timer_get_repeat(&t->t))
    end(t);
}

msrt_code msrt_alarms_set(msrt_alarms *a, void *owner, uint64_t owner_id,
                          uint64_t id, uint64_t due_ns, uint64_t repeat_ms) {
  entry *t = calloc(1, sizeof *t);
  if (!t || uv_timer_init(a->loop, &t->t) != 0) {
    free(t);
    a->cls->release(owner);
    return MSRT_E_NOMEM;
  }
  t->magic = MSRT_HANDLE_MAGIC;
  t->t.data = t;
  t->cls = a->cls;
  t->set = a;
  t->owner = owner;
  t->owner_id = owner_id;
  t->id = id;
  t->next = a->head;
  if (a->head) a->head->prev = t;
  a->head = t;
  a->n++;
  uv_unref((uv_handle_t *)&t->t);
  msrt_timer_start_at(&t->t, on_due, due_ns, repeat_ms);
  return MSRT_E_OK;
}

msrt_code msrt_alarms_cancel(msrt_alarms *a, uint64_t owner_id, uint64_t id) {
  for (entry *t = a->head; t; t = t->next)
    if (t->owner_id == owner_id && t->id == id) {
      end(t);
      return MSRT_E_OK;
    }
  return MSRT_E_NOT_FOUND;
}

size_t msrt_alarms_count(const msrt_alarms *a) { return a->n; }

void msrt_alarms_free(msrt_alarms *a) {
  if (!a) return;
  while (a->head) end(a->head);
  free(a);
}
