/* allow_responses (nats/auth.h, as nats-server's "resp" map): a client
 * allowed to answer may publish to each reply subject it was handed, up to
 * its user's max times and within its expiry, whatever its publish list
 * says. The entries live with the connection: bounded (the oldest goes
 * first past RESP_MAX), dropped when used up or expired. */
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "nats/auth.h"
#include "nats/internal.h"

#define RESP_MAX 4096

struct nats_resp {
  char *subject;
  size_t len;
  int left;
  uint64_t deadline_ns; /* 0: none */
};

static void drop_at(msrt_nats_conn *c, size_t i) {
  free(c->resp[i].subject);
  memmove(c->resp + i, c->resp + i + 1, (c->nresp - i - 1) * sizeof *c->resp);
  c->nresp--;
}

void msrt_nats_resp_note(msrt_nats_conn *c, const char *reply, size_t n) {
  if (!c->resp_max) return;
  if (c->nresp == RESP_MAX) drop_at(c, 0);
  if (c->nresp == c->capresp) {
    size_t cap = c->capresp ? c->capresp * 2 : 8;
    struct nats_resp *r = realloc(c->resp, cap * sizeof *r);
    if (!r) return;
    c->resp = r, c->capresp = cap;
  }
  char *s = malloc(n);
  if (!s) return;
  memcpy(s, reply, n);
  uint64_t ttl = c->resp_ttl_ns;
  c->resp[c->nresp++] = (struct nats_resp){s, n, c->resp_max,
                                           ttl ? msrt_now_ns() + ttl : 0};
}

bool msrt_nats_resp_take(msrt_nats_conn *c, const char *subject, size_t n) {
  bool ok = false;
  uint64_t now = msrt_now_ns();
  pthread_mutex_lock(&c->mu);
  for (size_t i = 0; i < c->nresp;) {
    struct nats_resp *r = &c->resp[i];
    if (r->deadline_ns && now > r->deadline_ns) {
      drop_at(c, i);
      continue;
    }
    if (!ok && r->len == n && memcmp(r->subject, subject, n) == 0) {
      ok = true;
      if (--r->left == 0) {
        drop_at(c, i);
        continue;
      }
    }
    i++;
  }
  pthread_mutex_unlock(&c->mu);
  return ok;
}

void msrt_nats_resp_rules(msrt_nats_conn *c) {
  int max = 0;
  uint64_t ms = 0;
  if (!msrt_nats_perms_responses(c->perms, &max, &ms)) max = 0;
  pthread_mutex_lock(&c->mu);
  c->resp_max = max;
  c->resp_ttl_ns = ms * 1000000ull;
  pthread_mutex_unlock(&c->mu);
}

void msrt_nats_resp_free(msrt_nats_conn *c) {
  while (c->nresp) drop_at(c, c->nresp - 1);
  free(c->resp);
  c->resp = NULL;
  c->capresp = 0;
}
