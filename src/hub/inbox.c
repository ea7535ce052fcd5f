#include "hub/inbox.h"

#include <stdlib.h>

#include "hub/hub.h"

struct msrt_inbox {
  unsigned magic; /* MSRT_HANDLE_MAGIC, first: marks the handle as ours */
  uv_async_t async;
  pthread_mutex_t lock;
  msrt_inbox_item *items, *spare;
  size_t n, cap, spare_cap;
  int closed;
  int draining; /* a drain callback that drains again must not recurse */
  msrt_inbox_drain_fn fn;
  void *ud;
};

static void on_async(uv_async_t *a) { msrt_inbox_drain(a->data); }

msrt_inbox *msrt_inbox_new(uv_loop_t *loop, msrt_inbox_drain_fn fn, void *ud) {
  msrt_inbox *in = calloc(1, sizeof *in);
  if (!in) return NULL;
  in->magic = MSRT_HANDLE_MAGIC;
  in->fn = fn;
  in->ud = ud;
  if (uv_async_init(loop, &in->async, on_async) != 0) {
    free(in);
    return NULL;
  }
  in->async.data = in;
  uv_unref((uv_handle_t *)&in->async);
  pthread_mutex_init(&in->lock, NULL);
  return in;
}

int msrt_inbox_push(msrt_inbox *in, msrt_inbox_item item) {
  pthread_mutex_lock(&in->lock);
  if (in->closed) {
    pthread_mutex_unlock(&in->lock);
    return -1;
  }
  if (in->n == in->cap) {
    size_t cap = in->cap ? in->cap * 2 : 64;
    msrt_inbox_item *grown = realloc(in->items, cap * sizeof *grown);
    if (!grown) {
      pthread_mutex_unlock(&in->lock);
      return -1;
    }
    in->items = grown;
    in->cap = cap;
  }
  in->items[in->n++] = item;
  int first = in->n == 1;
  pthread_mutex_unlock(&in->lock);
  /* One send per batch: later pushes find the drain already due. */
  if (first) uv_async_send(&in->async);
  return 0;
}

void msrt_inbox_keep_alive(msrt_inbox *in, int on) {
  if (on) uv_ref((uv_handle_t *)&in->async);
  else uv_unref((uv_handle_t *)&in->async);
}

size_t msrt_inbox_depth(msrt_inbox *in) {
  pthread_mutex_lock(&in->lock);
  size_t n = in->n;
  pthread_mutex_unlock(&in->lock);
  return n;
}

void msrt_inbox_drain(msrt_inbox *in) {
  if (in->draining) return;
  in->draining = 1;
  for (;;) {
    pthread_mutex_lock(&in->lock);
    size_t n = in->n;
    msrt_inbox_item *items = in->items;
    size_t cap = in->cap;
    in->items = in->spare;
    in->cap = in->spare_cap;
    in->n = 0;
    pthread_mutex_unlock(&in->lock);
    if (n == 0) {
      in->spare = items;
      in->spare_cap = cap;
      in->draining = 0;
      return;
    }
    in->fn(items, n, in->ud);
    in->spare = items; /* the drain runs only on the hub: no race on spare */
    in->spare_cap = cap;
  }
}

static void on_close(uv_handle_t *h) {
  msrt_inbox *in = h->data;
  pthread_mutex_destroy(&in->lock);
  free(in->items);
  free(in->spare);
  free(in);
}

void msrt_inbox_close(msrt_inbox *in) {
  pthread_mutex_lock(&in->lock);
  in->closed = 1;
  for (size_t i = 0; i < in->n; i++) msrt_env_unref(in->items[i].env);
  in->n = 0;
  pthread_mutex_unlock(&in->lock);
  uv_close((uv_handle_t *)&in->async, on_close);
}
