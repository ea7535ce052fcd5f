#include "core/logsink.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct msrt_logsink {
  int fd;
  pthread_mutex_t mu;
  pthread_cond_t more;    /* the writer: something queued, or stop */
  pthread_cond_t drained; /* flushers: written_total moved */
  char *buf;              /* a ring of cap bytes: used bytes from head */
  size_t cap, head, used;
  uint64_t queued_total, written_total; /* bytes ever, flush targets */
  uint64_t dropped, dropped_told;       /* lines */
  int stop, writing;
  pthread_t thread;
};

/* Append n bytes; the caller checked the room. */
static void put(msrt_logsink *s, const char *p, size_t n) {
  size_t tail = (s->head + s->used) % s->cap;
  size_t first = n < s->cap - tail ? n : s->cap - tail;
  memcpy(s->buf + tail, p, first);
  memcpy(s->buf, p + first, n - first);
  s->used += n;
  s->queued_total += n;
}

/* Say how many lines were dropped, once there is room for saying it. */
static void tell_dropped(msrt_logsink *s) {
  if (s->dropped == s->dropped_told) return;
  char line[96];
  int n = snprintf(line, sizeof line,
                   "msrt-lua: %llu log lines dropped: stderr is not keeping up\n",
                   (unsigned long long)(s->dropped - s->dropped_told));
  if (n < 0 || (size_t)n > s->cap - s->used) return;
  put(s, line, (size_t)n);
  s->dropped_told = s->dropped;
}

static void *writer(void *arg) {
  msrt_logsink *s = arg;
  pthread_mutex_lock(&s->mu);
  for (;;) {
    while (!s->used && !s->stop) pthread_cond_wait(&s->more, &s->mu);
    if (!s->used) break; /* stopped and drained */
    /* [head, head + n) is the writer's alone: callers append past it */
    size_t n = s->used < s->cap - s->head ? s->used : s->cap - s->head;
    const char *p = s->buf + s->head;
    s->writing = 1;
    pthread_mutex_unlock(&s->mu);
    ssize_t w;
    do w = write(s->fd, p, n);
    while (w < 0 && errno == EINTR);
    pthread_mutex_lock(&s->mu);
    s->writing = 0;
    size_t done = w < 0 ? s->used : (size_t)w; /* no reader: discard */
    s->head = (s->head + done) % s->cap;
    s->used -= done;
    s->written_total += done;
    pthread_cond_broadcast(&s->drained);
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

msrt_logsink *msrt_logsink_new(int fd, size_t capacity, msrt_error *err) {
  msrt_logsink *s = calloc(1, sizeof *s);
  char *buf = capacity ? malloc(capacity) : NULL;
  if (!s || !buf) {
    free(s);
    free(buf);
    msrt_error_set(err, MSRT_E_NOMEM, "out of memory making the log sink");
    return NULL;
  }
  s->fd = fd;
  s->buf = buf;
  s->cap = capacity;
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->more, NULL);
  pthread_cond_init(&s->drained, NULL);
  int rc = pthread_create(&s->thread, NULL, writer, s);
  if (rc != 0) {
    msrt_error_set(err, MSRT_E_INTERNAL, "log sink thread: %s", strerror(rc));
    free(buf);
    free(s);
    return NULL;
  }
  return s;
}

bool msrt_logsink_write(msrt_logsink *s, const char *text, size_t len) {
  size_t nl = len == 0 || text[len - 1] != '\n';
  if (len + nl > s->cap) len = s->cap - nl;
  pthread_mutex_lock(&s->mu);
  tell_dropped(s);
  bool ok = len + nl <= s->cap - s->used;
  if (ok) {
    put(s, text, len);
    if (nl) put(s, "\n", 1);
    pthread_cond_signal(&s->more);
  } else {
    s->dropped++;
  }
  pthread_mutex_unlock(&s->mu);
  return ok;
}

static struct timespec deadline(int timeout_ms) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  t.tv_sec += timeout_ms / 1000;
  t.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (t.tv_nsec >= 1000000000L) t.tv_sec++, t.tv_nsec -= 1000000000L;
  return t;
}

msrt_code msrt_logsink_flush(msrt_logsink *s, int timeout_ms) {
  struct timespec until = deadline(timeout_ms);
  pthread_mutex_lock(&s->mu);
  uint64_t target = s->queued_total;
  while (s->written_total < target &&
         pthread_cond_timedwait(&s->drained, &s->mu, &until) == 0) {
  }
  msrt_code rc = s->written_total < target ? MSRT_E_TIMEOUT : MSRT_E_OK;
  pthread_mutex_unlock(&s->mu);
  return rc;
}

uint64_t msrt_logsink_dropped(msrt_logsink *s) {
  pthread_mutex_lock(&s->mu);
  uint64_t n = s->dropped;
  pthread_mutex_unlock(&s->mu);
  return n;
}

msrt_code msrt_logsink_free(msrt_logsink *s, int timeout_ms) {
  if (!s) return MSRT_E_OK;
  msrt_logsink_flush(s, timeout_ms);
  pthread_mutex_lock(&s->mu);
  s->stop = 1;
  pthread_cond_signal(&s->more);
  pthread_mutex_unlock(&s->mu);
  struct timespec until = deadline(timeout_ms);
  if (pthread_timedjoin_np(s->thread, NULL, &until) != 0)
    return MSRT_E_TIMEOUT; /* stuck writing to a stalled reader: left */
  pthread_cond_destroy(&s->more);
  pthread_cond_destroy(&s->drained);
  pthread_mutex_destroy(&s->mu);
  free(s->buf);
  free(s);
  return MSRT_E_OK;
}
