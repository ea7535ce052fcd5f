/* Unguessable tokens for reply inboxes.
 *
 * A request's reply subject is how its answer finds the requester, so a
 * party that can guess it can answer in the responder's place (NATS makes
 * its inboxes from NUID: a random prefix and a random-step suffix; the
 * nats-server docs, "Authorization", allow_responses, rely on them being
 * unguessable). Here every token is drawn from a CSPRNG (a ChaCha20
 * keystream per thread, keyed from the kernel's CSPRNG and rekeyed
 * often): an agent handed one inbox learns nothing about the next.
 *
 * Thread-safety: any thread (per-thread state).
 */
#ifndef MSRT_CORE_TOKEN_H
#define MSRT_CORE_TOKEN_H

#include "core/error.h"

/* Characters in a token: each one of 64 ([A-Za-z0-9_-], valid in a NATS
 * subject token), 6 random bits each: 132 bits. */
#define MSRT_TOKEN_LEN 22

/* Write MSRT_TOKEN_LEN random characters and a NUL into out. Returns
 * MSRT_E_OK, or MSRT_E_INTERNAL when libsodium cannot start (no
 * randomness from the kernel: out is then not written and the caller must
 * refuse to make an inbox). */
msrt_code msrt_token(char out[MSRT_TOKEN_LEN + 1]);

#endif
