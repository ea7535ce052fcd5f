/* Compiled routing tables (docs/architecture.md "Router semantics": rewrite, weighted
 * split, dead-letter targets).
 *
 * A table is compiled once from an ordered list of rules and is immutable
 * afterwards, so any number of threads may apply it at once; the router holds
 * the current one behind an atomic pointer (msrt_router_set_routes in
 * router/index.h) and frees a replaced one only when no reader can see it.
 *
 * Rules are tried in order; the first whose `match` pattern matches the
 * subject wins, and its result is final (a rewritten subject is not routed
 * again). A rule has a `match` pattern and
 *   - `rewrite`: a template for the new subject, or
 *   - `split`:   weighted targets (templates), one chosen per message, or
 *   - neither, only `dead_letter`;
 * and optionally `dead_letter`: a literal subject the layer above publishes
 * the message to when the resolved subject has no subscriber.
 *
 * Templates: "$N" (N = 1, 2, ... in decimal, as many digits as follow) is
 * replaced by the Nth wildcard of the match pattern counted from the left:
 * the token a '*' matched, or for a final '>' the whole tail it matched
 * ("b.c"). A template token that is exactly '>' stands for that tail, so
 * `canary.>` -> `v1.>` keeps everything after "canary.". '$' not followed by
 * a digit is an ordinary character ("$SYS.x" is literal). This follows the
 * legacy "$1" form of NATS subject mapping (docs.nats.io, "Subject Mapping
 * and Partitioning"); NATS' {{wildcard(1)}} form is not supported. A
 * template must give a valid published subject once its references are
 * filled in, so '*' tokens and empty tokens are compile errors.
 */
#ifndef MSRT_ROUTER_ROUTES_H
#define MSRT_ROUTER_ROUTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Most wildcards a rule's match pattern may hold. */
#define MSRT_ROUTE_MAX_WILDCARDS 32

typedef struct {
  const char *subject; /* template, NUL-terminated */
  double weight;       /* > 0 and finite; relative to the others */
} msrt_route_target;

typedef struct {
  const char *match;              /* pattern, NUL-terminated; required */
  const char *rewrite;            /* template or NULL */
  const msrt_route_target *split; /* NULL = no split; non-NULL needs nsplit>0 */
  size_t nsplit;
  const char *dead_letter;        /* literal subject or NULL */
} msrt_route_rule;

typedef struct msrt_routes msrt_routes;

/* Compile rules[0..n) into a table.
 *   rules, n     the rules in order (n may be 0: a table that matches
 *                nothing); strings are copied, the caller keeps its own
 *   max_subject  limit in bytes for patterns, templates and the subjects
 *                apply produces; 0 = MSRT_SUBJECT_MAX_DEFAULT
 *   out          receives the table (NULL on failure)
 * Returns MSRT_E_OK; MSRT_E_BAD_CONFIG when a rule is wrong, the message
 * naming the rule by its position counted from 1 (rules[0] is "rule 1", as
 * in the Lua list the rules come from; split targets likewise) and why:
 * "rule 3: invalid pattern ...",
 * "rule 2: rewrite \"x.$3\" refers to $3 but \"a.*.*\" has only 2
 * wildcards", "rule 1: split target 2 weight must be > 0 (got -1)",
 * "rule 5: empty split", "rule 4: both rewrite and split", "rule 6: no
 * action (rewrite, split or dead_letter)", "'>' in a template but the
 * pattern does not end in '>'", too many wildcards...; MSRT_E_NOMEM. A
 * table with any bad rule is refused whole. Thread-safe (pure). */
msrt_code msrt_routes_compile(const msrt_route_rule *rules, size_t n,
                              size_t max_subject, msrt_routes **out,
                              msrt_error *err);

/* Free a table (NULL is ignored). Not while anyone may still apply it; a
 * table given to a router is the router's to free. */
void msrt_routes_free(msrt_routes *t);

/* Number of rules in t. */
size_t msrt_routes_count(const msrt_routes *t);

typedef struct {
  int rule;            /* index of the rule that matched; -1 = none */
  int target;          /* chosen split target index; -1 = not a split */
  bool rewritten;      /* a rewrite or split applied: subject is in buf */
  const char *subject; /* the resolved subject: the input pointer when not
                          rewritten, else the caller's buf (NUL-terminated) */
  size_t len;          /* its length in bytes */
  const char *dead_letter; /* the rule's dead-letter subject or NULL; points
                              into the table (or the caller's buf when it
                              comes from msrt_router_route) */
  size_t dead_letter_len;
} msrt_route_result;

/* Route one subject through the table.
 *   t            table (NULL = no rules: the subject passes unchanged)
 *   subject,len  a published subject (assumed valid; not re-validated)
 *   buf, cap     where a rewritten subject is written, NUL-terminated; cap
 *                in bytes (max_subject + 1 is always enough)
 *   rng          splitmix64 state for split choices, one per thread (the
 *                router keeps one per reader); NULL uses a thread-local one
 *   res          the result (always filled)
 * Returns MSRT_E_OK; MSRT_E_LIMIT when the rewritten subject would exceed
 * the table's max_subject or cap (res then says the rule, subject = input,
 * rewritten = false; the message names the rule counted from 1). A split picks target i with probability
 * weight_i / sum(weights) from a 53-bit draw. Thread-safe as long as each
 * thread has its own rng state. */
msrt_code msrt_routes_apply(const msrt_routes *t, const char *subject,
                            size_t len, char *buf, size_t cap, uint64_t *rng,
                            msrt_route_result *res, msrt_error *err);

#endif
