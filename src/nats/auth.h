/* Authorisation as NATS does it (README "Authorisation"; nats-server's
 * authorization block: users with a password or a token, per-user
 * publish/subscribe allow and deny lists, allow_responses, connection
 * limits).
 *
 * A policy (msrt_nats_policy) is built once from plain data (the Lua
 * binding reads the policy file into it) and swapped whole on reload; its
 * msrt_nats_auth hook (nats/conn.h) decides each CONNECT and hands the
 * connection its user's permissions (msrt_nats_perms, shared, counted).
 *
 * Permission rules (nats-server's): a subject is allowed when the allow
 * list is empty or one of its patterns matches it, and no deny pattern
 * matches it. A subscription's subject is matched token by token with its
 * own wildcards as literal tokens (allow "foo.>" permits SUB foo.*; allow
 * "foo.bar" does not). allow_responses: a client that was handed a
 * message with a reply subject may publish to that reply (max_responses
 * times, 1 by default, within responses_ms) even when its publish list
 * does not allow it.
 *
 * Thread-safety: a policy and permissions are immutable once built; the
 * counts are atomic. Building and the hook: hub thread.
 */
#ifndef MSRT_NATS_AUTH_H
#define MSRT_NATS_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "nats/conn.h"

/* One user's rules, as given. Lists are arrays of n patterns. */
typedef struct {
  const char *user;      /* NULL for a token entry */
  const char *password;  /* with user */
  const char *token;     /* instead of user/password */
  const char *const *pub_allow, *const *pub_deny;
  size_t n_pub_allow, n_pub_deny;
  const char *const *sub_allow, *const *sub_deny;
  size_t n_sub_allow, n_sub_deny;
  bool allow_responses;
  int max_responses;     /* replies per request; 0 = 1 */
  uint64_t responses_ms; /* how long a reply stays allowed; 0 = none */
  size_t max_connections; /* this user's connections at once; 0 = any */
} msrt_nats_user;

typedef struct msrt_nats_policy msrt_nats_policy;

/* Build a policy of n users. Every pattern is checked (NATS subject
 * rules); returns NULL with err (bad_config naming the user and pattern,
 * or nomem). */
msrt_nats_policy *msrt_nats_policy_new(const msrt_nats_user *users, size_t n,
                                       msrt_error *err);
void msrt_nats_policy_free(msrt_nats_policy *p);

/* The hook for msrt_nats_server_set_auth (required = true): ud is the
 * policy, which must outlive its use (swap hooks, then reauthorize, then
 * free the old policy). */
msrt_nats_auth msrt_nats_policy_auth(msrt_nats_policy *p);

/* Permissions. NULL permits everything. A connection gives back what its
 * CONNECT got with msrt_nats_perms_unref (which also ends its count
 * against its user's max_connections; NULL is ignored). */
void msrt_nats_perms_unref(msrt_nats_perms *p);
bool msrt_nats_perms_publish(const msrt_nats_perms *p, const char *subject,
                             size_t len);
bool msrt_nats_perms_subscribe(const msrt_nats_perms *p, const char *subject,
                               size_t len, const char *queue, size_t qlen);
/* The subscribe deny list at delivery (nats-server's per-message deny
 * check): a deny pattern refuses SUB only for subjects it matches as
 * above, so a wider wildcard subscription it overlaps is allowed (allow
 * "a.>", deny "a.secret": SUB a.> is), and each message to it must be
 * checked. sub_overlaps_deny: whether pattern has a wildcard and some
 * deny pattern intersects it (its deliveries need the check; false for
 * NULL). sub_denied: whether a published subject matches a deny pattern
 * (false for NULL). Any thread, on permissions the caller holds. */
bool msrt_nats_perms_sub_overlaps_deny(const msrt_nats_perms *p,
                                       const char *pattern, size_t len);
bool msrt_nats_perms_sub_denied(const msrt_nats_perms *p, const char *subject,
                                size_t len);
/* Whether p has allow_responses, and its figures. */
bool msrt_nats_perms_responses(const msrt_nats_perms *p, int *max,
                               uint64_t *ms);

#endif
