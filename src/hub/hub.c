#include "hub/hub.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct msrt_hub {
  unsigned magic; /* MSRT_HANDLE_MAGIC: our handles' data point here */
  uv_loop_t loop;
  uv_signal_t sigint, sigterm;
  msrt_hub_shutdown_fn on_shutdown;
  void *on_shutdown_ud;
  int running;
  int stopping;
  int held; /* the shutdown hook goes on on the loop */
  int status;
  char reason[128];
};

static void on_signal(uv_signal_t *sig, int signum) {
  msrt_hub *h = sig->data;
  /* Stopping the watchers gives both signals back their default action
   * (libuv restores SIG_DFL), so a second one ends the process at once even
   * if the shutdown itself is stuck. */
  uv_signal_stop(&h->sigint);
  uv_signal_stop(&h->sigterm);
  msrt_hub_shutdown(h, signum == SIGINT ? "signal:SIGINT" : "signal:SIGTERM",
                    0);
}

msrt_hub *msrt_hub_new(msrt_error *err) {
  msrt_hub *h = calloc(1, sizeof *h);
  if (!h) {
    msrt_error_set(err, MSRT_E_NOMEM, "out of memory making the hub");
    return NULL;
  }
  h->magic = MSRT_HANDLE_MAGIC;
  int rc = uv_loop_init(&h->loop);
  if (rc == 0) rc = uv_signal_init(&h->loop, &h->sigint);
  if (rc == 0) rc = uv_signal_init(&h->loop, &h->sigterm);
  if (rc == 0) rc = uv_signal_start(&h->sigint, on_signal, SIGINT);
  if (rc == 0) rc = uv_signal_start(&h->sigterm, on_signal, SIGTERM);
  if (rc != 0) {
    msrt_error_set(err, MSRT_E_INTERNAL, "libuv: %s", uv_strerror(rc));
    free(h);
    return NULL;
  }
  h->sigint.data = h->sigterm.data = h;
  uv_unref((uv_handle_t *)&h->sigint);
  uv_unref((uv_handle_t *)&h->sigterm);
  h->loop.data = h;
  return h;
}

uv_loop_t *msrt_hub_loop(msrt_hub *h) { return &h->loop; }

void msrt_hub_on_shutdown(msrt_hub *h, msrt_hub_shutdown_fn fn, void *ud) {
  h->on_shutdown = fn;
  h->on_shutdown_ud = ud;
}

int msrt_hub_run_mode(msrt_hub *h, uv_run_mode mode) {
  if (h->running) return -1;
  h->running = 1;
  int rc = uv_run(&h->loop, mode);
  h->running = 0;
  return rc;
}

int msrt_hub_run(msrt_hub *h) {
  return msrt_hub_run_mode(h, UV_RUN_DEFAULT) < 0 ? -1 : 0;
}

int msrt_hub_running(const msrt_hub *h) { return h->running; }

void msrt_hub_shutdown(msrt_hub *h, const char *reason, int status) {
  if (h->stopping) return;
  h->stopping = 1;
  h->status = status;
  snprintf(h->reason, sizeof h->reason, "%s", reason ? reason : "normal");
  h->held = 1;
  if (h->on_shutdown && h->on_shutdown(h, h->reason, h->on_shutdown_ud))
    return; /* it ends with msrt_hub_shutdown_done */
  msrt_hub_shutdown_done(h);
}

void msrt_hub_shutdown_done(msrt_hub *h) {
  h->held = 0;
  /* Closing every handle lets uv_run return; the loop stays usable so the
   * close callbacks run when the caller drains it. */
  uv_stop(&h->loop);
}

int msrt_hub_stopping(const msrt_hub *h) { return h->stopping; }
const char *msrt_hub_reason(const msrt_hub *h) { return h->reason; }
int msrt_hub_status(const msrt_hub *h) { return h->status; }
void msrt_hub_set_status(msrt_hub *h, int status) { h->status = status; }

static void close_one(uv_handle_t *handle, void *arg) {
  (void)arg;
  if (!uv_is_closing(handle)) uv_close(handle, NULL);
}

void msrt_hub_close_all(msrt_hub *h) {
  while (h->held && uv_run(&h->loop, UV_RUN_ONCE)) {
  }
  if (h->held && h->on_shutdown) h->on_shutdown(h, NULL, h->on_shutdown_ud);
  h->held = 0;
  /* Several rounds: close callbacks may open or close more, and a pending
   * uv_stop makes the first uv_run return before doing anything. */
  for (int round = 0; round < 8; round++) {
    uv_walk(&h->loop, close_one, NULL);
    if (!uv_loop_alive(&h->loop)) break;
    uv_run(&h->loop, UV_RUN_DEFAULT);
  }
}

int msrt_hub_free(msrt_hub *h) {
  if (!h) return 0;
  int rc = uv_loop_close(&h->loop);
  if (rc == 0) free(h);
  return rc;
}
