/* The NATS client protocol, msrt's own parser and writers (README "The
 * network face"; the protocol as NATS documents it: "Client Protocol" of
 * docs.nats.io, and nats-server's server/parser.go and client.go for the
 * exact error texts and the limits).
 *
 * What a client sends, one control line each, ended by CRLF (a bare LF is
 * accepted, as nats-server does), the operation in any letter case and the
 * arguments split on spaces or tabs:
 *
 *   CONNECT <json>                    options (msrt_nats_connect_parse)
 *   PUB <subject> [reply] <#bytes>    then the payload and CRLF
 *   HPUB <subject> [reply] <#header bytes> <#total bytes>
 *                                     then headers + payload and CRLF
 *   SUB <subject> [queue group] <sid>
 *   UNSUB <sid> [max_msgs]
 *   PING, PONG, and +OK, -ERR <text>, INFO <json> (accepted, for peers)
 *
 * The parser is a state machine over two states, a control line and a
 * payload, fed whatever bytes a read gave (any split, one byte at a time
 * included). A command that lies whole inside one fed buffer is handed out
 * pointing into that buffer (no copy); only a command split across reads
 * is gathered: its control line in a buffer bounded by max_control, its
 * payload in one allocation of exactly the announced size, refused above
 * max_payload before anything is read.
 *
 * Errors end the connection, as nats-server ends it, with these texts
 * (sent as -ERR '<text>'):
 *   "Unknown Protocol Operation"     an unknown operation, wrong arguments,
 *                                    a bad size, a payload not followed by
 *                                    CRLF, headers larger than the total
 *   "maximum control line exceeded"  a control line over max_control
 *   "Maximum Payload Violation"      a payload over max_payload
 *
 * Thread-safety: a parser belongs to one thread at a time; the writers are
 * pure functions.
 */
#ifndef MSRT_NATS_PROTO_H
#define MSRT_NATS_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "proc/codec.h" /* msrt_sbuf */

/* nats-server's defaults (server/const.go): MAX_CONTROL_LINE_SIZE and
 * MAX_PAYLOAD_SIZE (bytes). */
#define MSRT_NATS_MAX_CONTROL_DEFAULT 4096
#define MSRT_NATS_MAX_PAYLOAD_DEFAULT (1024 * 1024)

/* The error texts nats-server sends (server/client.go), quoted in -ERR. */
#define MSRT_NATS_ERR_UNKNOWN "Unknown Protocol Operation"
#define MSRT_NATS_ERR_CONTROL "maximum control line exceeded"
#define MSRT_NATS_ERR_PAYLOAD "Maximum Payload Violation"
#define MSRT_NATS_ERR_AUTH "Authorization Violation"
#define MSRT_NATS_ERR_PUB_SUBJECT "Invalid Publish Subject"
#define MSRT_NATS_ERR_SUBJECT "Invalid Subject"
#define MSRT_NATS_ERR_SLOW "Slow Consumer"
#define MSRT_NATS_ERR_STALE "Stale Connection"
#define MSRT_NATS_ERR_MAX_CONN "maximum connections exceeded"
#define MSRT_NATS_ERR_MAX_SUBS "maximum subscriptions exceeded"
#define MSRT_NATS_ERR_NO_RESP_HDR "no responders requires headers support"

typedef enum {
  MSRT_NATS_CONNECT = 1,
  MSRT_NATS_PUB, /* PUB and HPUB (hdr_len > 0 or hpub) */
  MSRT_NATS_SUB,
  MSRT_NATS_UNSUB,
  MSRT_NATS_PING,
  MSRT_NATS_PONG,
  MSRT_NATS_OK,
  MSRT_NATS_ERR,
  MSRT_NATS_INFO
} msrt_nats_op;

/* One command. Every pointer is valid only during the callback it is
 * handed to (into the fed buffer, or the parser's own). Absent fields are
 * NULL with length 0. */
typedef struct {
  msrt_nats_op op;
  bool hpub;                 /* PUB: sent as HPUB */
  const char *subject;       /* PUB, SUB */
  size_t subject_len;
  const char *reply;         /* PUB: the reply subject */
  size_t reply_len;
  const char *queue;         /* SUB: the queue group */
  size_t queue_len;
  const char *sid;           /* SUB, UNSUB */
  size_t sid_len;
  const char *arg;           /* CONNECT/INFO json, -ERR text */
  size_t arg_len;
  const char *hdr;           /* HPUB: the header block ("NATS/1.0...") */
  size_t hdr_len;
  const char *payload;       /* PUB: the payload (after the headers) */
  size_t payload_len;
  int64_t max_msgs;          /* UNSUB: -1 when absent */
} msrt_nats_cmd;

/* Called once per complete command; returns false to go on, true to stop
 * the parse (the connection is closing). */
typedef bool (*msrt_nats_cmd_fn)(void *ud, const msrt_nats_cmd *cmd);

typedef struct {
  int state;             /* private */
  size_t max_control;    /* bytes of a control line without CRLF */
  size_t max_payload;    /* bytes of headers + payload */
  char *line;            /* a control line split across reads */
  size_t line_len;
  msrt_nats_cmd pending; /* the PUB whose payload is being gathered */
  char *msg;             /* its control line's arguments + payload */
  size_t msg_len, msg_need;
  size_t arg_off[3];     /* offsets of subject, reply in msg */
} msrt_nats_parser;

/* Start a parser; limits of 0 take the defaults above. */
void msrt_nats_parser_init(msrt_nats_parser *p, size_t max_control,
                           size_t max_payload);

/* Free what the parser gathered (the struct is the caller's). */
void msrt_nats_parser_free(msrt_nats_parser *p);

/* Feed len bytes; calls fn(ud, cmd) for each complete command in order.
 * Returns MSRT_E_OK when every byte was taken (a partial command is kept
 * for the next call); MSRT_E_CLOSED when fn asked to stop (the rest is
 * not read); MSRT_E_INVALID_ARG with *err one of the texts above, or
 * MSRT_E_NOMEM with *err NULL when memory ran out (the parser is then
 * unusable either way: end the connection). */
msrt_code msrt_nats_parse(msrt_nats_parser *p, const char *buf, size_t len,
                    msrt_nats_cmd_fn fn, void *ud, const char **err);

/* CONNECT's options (the fields msrt reads; others are ignored, as
 * nats-server ignores what it does not know). Strings are NUL-terminated
 * copies, NULL when absent. */
typedef struct {
  bool verbose, pedantic, headers, no_responders, echo, tls_required;
  int protocol;
  char *user, *pass, *auth_token, *name, *lang, *version;
} msrt_nats_connect;

/* Parse CONNECT's JSON (len bytes). Returns MSRT_E_OK, or
 * MSRT_E_INVALID_ARG when it is not a JSON object, a field has the wrong
 * type or a string could not be copied (out of memory; a connection
 * answers MSRT_NATS_ERR_UNKNOWN either way). echo defaults to true. Free
 * with msrt_nats_connect_free even after a failure. */
msrt_code msrt_nats_connect_parse(const char *json, size_t len,
                            msrt_nats_connect *out);
void msrt_nats_connect_free(msrt_nats_connect *c);

/* Writers: each appends one complete line (CRLF included) to out. */
void msrt_nats_put_err(msrt_sbuf *out, const char *text);
/* MSG subject sid [reply] #bytes, then the payload. */
void msrt_nats_put_msg(msrt_sbuf *out, const char *subject, size_t slen,
                       const char *sid, size_t sidlen, const char *reply,
                       size_t rlen, const void *payload, size_t plen);
/* HMSG subject sid [reply] #hdr #total, then hdr and the payload. */
void msrt_nats_put_hmsg(msrt_sbuf *out, const char *subject, size_t slen,
                        const char *sid, size_t sidlen, const char *reply,
                        size_t rlen, const void *hdr, size_t hlen,
                        const void *payload, size_t plen);

/* Headers. msrt keeps them as "name\0value\0" pairs (lua/msrt/headers.lua)
 * and a status as the pairs Status and Description (NATS' 503 no
 * responders: Status "503"); NATS writes a block "NATS/1.0[ code[
 * description]]\r\n" + "Name: value\r\n"... + "\r\n".
 *
 * msrt_nats_hdr_from_pairs appends the NATS block of the pairs (len bytes;
 * Status/Description become the status line). Returns MSRT_E_OK, or
 * MSRT_E_INVALID_ARG when the pairs are malformed (out may hold part of a
 * block: reset it). Out of memory is out->oom. */
msrt_code msrt_nats_hdr_from_pairs(msrt_sbuf *out, const char *pairs, size_t len);

/* msrt_nats_hdr_to_pairs appends the pairs of a NATS block (len bytes): a
 * status line's code and description become Status and Description;
 * every line is kept in order (a name repeated: lua/msrt/headers.lua's
 * decode keeps the last); a value's surrounding blanks are trimmed.
 * Returns MSRT_E_OK, or MSRT_E_INVALID_ARG when the block does not start
 * with "NATS/1.0" or a line is not "Name: value" (names: printable ASCII,
 * no ':' or space; out may hold part of the pairs: reset it). Out of
 * memory is out->oom. */
msrt_code msrt_nats_hdr_to_pairs(msrt_sbuf *out, const char *block, size_t len);

#endif
