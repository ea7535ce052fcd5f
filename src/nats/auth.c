/* An auth policy and its permissions (nats/auth.h). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nats/auth.h"
#include "router/subject.h"

typedef struct {
  char **pat;
  size_t n;
} plist;

struct msrt_nats_perms {
  atomic_uint refs;  /* the policy's + one per connection */
  atomic_size_t conns; /* connections holding it */
  char *user, *password, *token;
  plist pub_allow, pub_deny, sub_allow, sub_deny;
  bool allow_responses;
  int max_responses;
  uint64_t responses_ms;
  size_t max_connections;
};

struct msrt_nats_policy {
  msrt_nats_perms **users;
  size_t n;
};

static void plist_free(plist *l) {
  for (size_t i = 0; i < l->n; i++) free(l->pat[i]);
  free(l->pat);
}

static void perms_free(msrt_nats_perms *p) {
  plist_free(&p->pub_allow), plist_free(&p->pub_deny);
  plist_free(&p->sub_allow), plist_free(&p->sub_deny);
  free(p->user), free(p->password), free(p->token);
  free(p);
}

static void perms_drop(msrt_nats_perms *p) {
  if (atomic_fetch_sub(&p->refs, 1) == 1) perms_free(p);
}

void msrt_nats_perms_unref(msrt_nats_perms *p) {
  if (!p) return;
  atomic_fetch_sub(&p->conns, 1);
  perms_drop(p);
}

static int plist_make(plist *l, const char *const *pats, size_t n,
                      const char *who, const char *what, msrt_error *err) {
  l->pat = calloc(n ? n : 1, sizeof *l->pat);
  if (!l->pat) return msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) {
    if (!pats[i] || msrt_pattern_validate(pats[i], strlen(pats[i]), 0, NULL))
      return msrt_error_set(err, MSRT_E_BAD_CONFIG,
                            "user %s: %s pattern %zu (\"%s\") is not a valid "
                            "NATS subject pattern", who, what, i + 1,
                            pats[i] ? pats[i] : "");
    if (!(l->pat[i] = strdup(pats[i])))
      return msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
    l->n = i + 1;
  }
  return MSRT_E_OK;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static msrt_nats_perms *perms_new(const msrt_nats_user *u, msrt_error *err) {
  msrt_nats_perms *p = calloc(1, sizeof *p);
  if (!p) {
    msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
    return NULL;
  }
  atomic_init(&p->refs, 1);
  atomic_init(&p->conns, 0);
  const char *who = u->user ? u->user : "(token)";
  p->user = dup_or_null(u->user);
  p->password = dup_or_null(u->password);
  p->token = dup_or_null(u->token);
  p->allow_responses = u->allow_responses;
  p->max_responses = u->max_responses > 0 ? u->max_responses : 1;
  p->responses_ms = u->responses_ms;
  p->max_connections = u->max_connections;
  if ((!u->user && !u->token) || (u->user && !u->password)) {
    msrt_error_set(err, MSRT_E_BAD_CONFIG,
                   "user %s: needs a user with a password, or a token", who);
  } else if (plist_make(&p->pub_allow, u->pub_allow, u->n_pub_allow, who,
                        "publish allow", err) ||
             plist_make(&p->pub_deny, u->pub_deny, u->n_pub_deny, who,
                        "publish deny", err) ||
             plist_make(&p->sub_allow, u->sub_allow, u->n_sub_allow, who,
                        "subscribe allow", err) ||
             plist_make(&p->sub_deny, u->sub_deny, u->n_sub_deny, who,
                        "subscribe deny", err)) {
  } else {
    return p;
  }
  perms_free(p);
  return NULL;
}

msrt_nats_policy *msrt_nats_policy_new(const msrt_nats_user *users, size_t n,
                                       msrt_error *err) {
  msrt_nats_policy *pol = calloc(1, sizeof *pol);
  if (pol) pol->users = calloc(n ? n : 1, sizeof *pol->users);
  if (!pol || !pol->users) {
    free(pol);
    msrt_error_set(err, MSRT_E_NOMEM, "out of memory");
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    if (!(pol->users[i] = perms_new(&users[i], err))) {
      pol->n = i;
      msrt_nats_policy_free(pol);
      return NULL;
    }
    pol->n = i + 1;
  }
  return pol;
}

void msrt_nats_policy_free(msrt_nats_policy *p) {
  if (!p) return;
  for (size_t i = 0; i < p->n; i++) perms_drop(p->users[i]);
  free(p->users);
  free(p);
}

/* Compare secrets in time independent of where they differ. */
static bool same_secret(const char *a, const char *b) {
  if (!a || !b) return false;
  size_t la = strlen(a), lb = strlen(b);
  unsigned char d = la != lb;
  for (size_t i = 0; i < la; i++) d |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
  return d == 0;
}

static msrt_code authorize(void *ud, const msrt_nats_connect *o,
                           msrt_nats_perms **out, char *user, size_t ucap) {
  msrt_nats_policy *pol = ud;
  for (size_t i = 0; i < pol->n; i++) {
    msrt_nats_perms *p = pol->users[i];
    bool match = p->token ? same_secret(o->auth_token, p->token)
                          : o->user && strcmp(o->user, p->user) == 0 &&
                                same_secret(o->pass, p->password);
    if (!match) continue;
    if (p->max_connections && atomic_load(&p->conns) >= p->max_connections)
      return MSRT_E_PERMISSION;
    atomic_fetch_add(&p->refs, 1);
    atomic_fetch_add(&p->conns, 1);
    *out = p;
    snprintf(user, ucap, "%s", p->user ? p->user : "token");
    return MSRT_E_OK;
  }
  return MSRT_E_PERMISSION;
}

msrt_nats_auth msrt_nats_policy_auth(msrt_nats_policy *p) {
  return (msrt_nats_auth){.authorize = authorize, .required = true, .ud = p};
}

static bool any_match(const plist *l, const char *s, size_t n) {
  for (size_t i = 0; i < l->n; i++)
    if (msrt_subject_matchesn(l->pat[i], strlen(l->pat[i]), s, n)) return true;
  return false;
}

static bool allowed(const plist *allow, const plist *deny, const char *s,
                    size_t n) {
  if (allow->n && !any_match(allow, s, n)) return false;
  return !any_match(deny, s, n);
}

bool msrt_nats_perms_publish(const msrt_nats_perms *p, const char *subject,
                             size_t len) {
  return !p || allowed(&p->pub_allow, &p->pub_deny, subject, len);
}

bool msrt_nats_perms_subscribe(const msrt_nats_perms *p, const char *subject,
                               size_t len, const char *queue, size_t qlen) {
  (void)queue, (void)qlen;
  return !p || allowed(&p->sub_allow, &p->sub_deny, subject, len);
}

bool msrt_nats_perms_sub_overlaps_deny(const msrt_nats_perms *p,
                                       const char *pattern, size_t len) {
  if (!p || !p->sub_deny.n || msrt_subject_is_literal(pattern, len))
    return false;
  for (size_t i = 0; i < p->sub_deny.n; i++) {
    const char *d = p->sub_deny.pat[i];
    if (msrt_patterns_intersect(d, strlen(d), pattern, len)) return true;
  }
  return false;
}

bool msrt_nats_perms_sub_denied(const msrt_nats_perms *p, const char *subject,
                                size_t len) {
  return p && any_match(&p->sub_deny, subject, len);
}

bool msrt_nats_perms_responses(const msrt_nats_perms *p, int *max,
                               uint64_t *ms) {
  if (!p || !p->allow_responses) return false;
  *max = p->max_responses;
  *ms = p->responses_ms;
  return true;
}
