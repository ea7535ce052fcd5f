/* Subjects and subscription patterns (docs/architecture.md "Router semantics").
 *
 * The rules are NATS' rules, taken from nats-server server/sublist.go
 * (isValidSubject, subjectIsLiteral / IsValidPublishSubject, and the matching
 * done by matchLiteral / the Sublist tree) and the NATS docs "Subject-Based
 * Messaging" (docs.nats.io/nats-concepts/subjects):
 *
 *   - a subject is one or more tokens separated by '.'; no token is empty
 *     (so "", ".a", "a." and "a..b" are invalid);
 *   - no whitespace anywhere: ' ', '\t', '\n', '\r', '\f' (sublist.go's set);
 *   - '*' matches exactly one token, '>' matches one or more trailing tokens
 *     and may only be the last token;
 *   - '*' and '>' are wildcards only as whole tokens: in "a.b*c" or "a.>b"
 *     they are ordinary characters;
 *   - a published subject holds no wildcard token.
 *
 * Two deliberate additions to sublist.go, both stricter:
 *   - every other ASCII control character (0x00-0x1f, 0x7f; NUL included) is
 *     invalid too (nats-server rejects NUL only when it checks runes);
 *   - a length limit in bytes (NATS bounds subjects only through the
 *     protocol's max_control_line, 4 KiB by default; we take an argument).
 * Bytes >= 0x80 are accepted as they are (UTF-8 is not checked).
 *
 * Every function here is pure: no global state, any thread, no allocation.
 */
#ifndef MSRT_ROUTER_SUBJECT_H
#define MSRT_ROUTER_SUBJECT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

/* Default length limit in bytes, used when a limit argument is 0. */
#define MSRT_SUBJECT_MAX_DEFAULT 4096

/* Validate a subject to publish on: the rules above, and no wildcard token.
 *   s, len   the subject bytes (need not be NUL-terminated; s may be NULL
 *            only when len is 0)
 *   max_len  limit in bytes; 0 means MSRT_SUBJECT_MAX_DEFAULT
 *   err      filled on failure (may be NULL)
 * Returns MSRT_E_OK, or MSRT_E_INVALID_SUBJECT with a message naming the
 * subject (escaped, cut at 200 bytes) and the first rule broken, scanning
 * left to right, e.g.
 *   invalid subject "a..b": empty token at position 2
 *   invalid subject "a.*": wildcard '*' at position 2 is not allowed in a
 *     published subject
 *   invalid subject "a b": whitespace ' ' (0x20) at offset 1
 * Positions count tokens from 1; offsets count bytes from 0. */
msrt_code msrt_subject_validate(const char *s, size_t len, size_t max_len,
                                msrt_error *err);

/* Validate a subscription pattern: the rules above; '*' anywhere as a whole
 * token, '>' only as the last token. Same arguments and errors as
 * msrt_subject_validate, with messages starting "invalid pattern", e.g.
 *   invalid pattern "a.>.b": '>' must be the last token but is at position
 *     2 of 3 */
msrt_code msrt_pattern_validate(const char *s, size_t len, size_t max_len,
                                msrt_error *err);

/* Validate a queue group name. NATS gives queue names the subject naming
 * rules (case sensitive, no whitespace); here: non-empty, no whitespace or
 * control character, at most max_len bytes (0 = MSRT_SUBJECT_MAX_DEFAULT).
 * Dots and '*'/'>' are ordinary characters in a queue name. Returns
 * MSRT_E_OK or MSRT_E_INVALID_SUBJECT ("invalid queue group ..."). */
msrt_code msrt_queue_validate(const char *q, size_t len, size_t max_len,
                              msrt_error *err);

/* True when no token of s is a wildcard ('*' or '>' as a whole token);
 * nats-server's subjectIsLiteral. Does not check the other rules. */
bool msrt_subject_is_literal(const char *s, size_t len);

/* True when the pattern matches the subject, token by token: a '*' token
 * matches any one token, a final '>' token matches one or more remaining
 * tokens, any other token matches an equal token (bytes compared exactly).
 * Both are assumed valid (pattern per msrt_pattern_validate, subject per
 * msrt_subject_validate); on invalid input the result is still the
 * token-by-token comparison above (no undefined behaviour). The n variant
 * takes lengths; the plain one NUL-terminated strings. */
bool msrt_subject_matchesn(const char *pattern, size_t plen,
                           const char *subject, size_t slen);
bool msrt_subject_matches(const char *pattern, const char *subject);

/* Count the tokens of s (number of '.' plus one; 0 when len is 0). */
size_t msrt_subject_tokens(const char *s, size_t len);

#endif
