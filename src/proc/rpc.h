/* JSON-RPC 2.0 messages at the process edge (codecs jsonrpc and lsp,
 * README "Processes"): telling a child's message apart (request,
 * notification, response) and writing the messages a child is sent.
 * Rules from the JSON-RPC 2.0 specification, sections 4 (request object:
 * "jsonrpc" exactly "2.0", a string "method", "params" an object or an
 * array when present, an "id" that is a string, a number or null; none
 * for a notification), 5 (response object: the request's id and exactly
 * one of "result" and "error"; error: an integer "code", a string
 * "message", optional "data") and 6 (batch: a non-empty array of them).
 * Framing is not here: newline-delimited for jsonrpc (MCP's stdio
 * transport), Content-Length headers for lsp (proc/framer.h).
 *
 * Thread-safety: pure functions; any thread.
 */
#ifndef MSRT_PROC_RPC_H
#define MSRT_PROC_RPC_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "proc/codec.h"

typedef enum {
  MSRT_RPC_INVALID, MSRT_RPC_REQUEST, MSRT_RPC_NOTIFICATION, MSRT_RPC_RESPONSE
} msrt_rpc_kind;

/* One message, its parts borrowed from the cJSON tree it was read from. */
typedef struct {
  msrt_rpc_kind kind;
  const cJSON *id;     /* request, response (NULL for a notification) */
  const char *method;  /* request, notification */
  const cJSON *params; /* request, notification; NULL when absent */
  const cJSON *result; /* response: exactly one of result and error */
  const cJSON *error;  /* response: an object with code and message */
  const char *why;     /* invalid: a static reason */
} msrt_rpc_msg;

/* Classify one message (an element of a batch, or the whole text). */
void msrt_rpc_classify(const cJSON *v, msrt_rpc_msg *m);

/* Whether id is one msrt issues (a positive integer below 2^53): *out. */
bool msrt_rpc_our_id(const cJSON *id, uint64_t *out);

/* Write a request (id > 0) or a notification (id 0): method m (mlen
 * bytes), params as JSON text (plen bytes; NULL or plen 0: none). */
void msrt_rpc_put_call(msrt_sbuf *b, uint64_t id, const char *m, size_t mlen,
                       const char *params, size_t plen);

/* Write a response to id (its JSON text, ilen bytes): result (JSON text,
 * rlen bytes; rlen 0: null). */
void msrt_rpc_put_result(msrt_sbuf *b, const char *id, size_t ilen,
                         const char *result, size_t rlen);

/* Write an error response to id (JSON text): code, message (mlen bytes,
 * a plain string), data (JSON text, dlen bytes; 0: none). */
void msrt_rpc_put_error(msrt_sbuf *b, const char *id, size_t ilen,
                        long code, const char *msg, size_t mlen,
                        const char *data, size_t dlen);

/* Standard error codes (JSON-RPC 2.0 section 5.1). */
#define MSRT_RPC_METHOD_NOT_FOUND (-32601)
#define MSRT_RPC_INTERNAL_ERROR (-32603)

#endif
