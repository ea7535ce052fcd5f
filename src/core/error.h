/* msrt error taxonomy (docs/architecture.md "Errors").
 *
 * Every error the runtime reports carries a code (a stable short name such as
 * "no_responders"), a category, a severity, a recovery hint and a message.
 * Codes are listed once in MSRT_ERROR_CODES with their default category,
 * severity and recovery, so a caller only names the code and the message.
 *
 * The one error-return convention of every C header (stated here and in
 * docs/architecture.md "Errors"):
 *   - A function that can fail returns msrt_code: MSRT_E_OK (0) when it
 *     did its work, else the code that says why. When it takes an
 *     `msrt_error *err` (NULL allowed unless said otherwise), err gets the
 *     code and a message. Its results go through out-parameters.
 *   - A function that makes an object returns it, or NULL when it could
 *     not (the reason in err when it takes one).
 *   - Answers that are not failures keep their own type: a predicate's
 *     bool, a count, a size, an id, a position (a lookup that finds
 *     nothing says "none" with NULL or -1, documented as such), and a wait
 *     registration's MSRT_WAIT_PENDING (core/waitlist.h) beside the codes.
 *   - No header returns errno, -errno, a libuv status or 0/-1 for a
 *     failure: the part that makes the system call turns errno into a code
 *     (io, spawn_failed, resource_exhausted, ...) with strerror's text in
 *     the message.
 *
 * Thread-safety: the tables are constant; msrt_error_set writes only the
 * msrt_error it is given, so any thread may use these functions.
 */
#ifndef MSRT_CORE_ERROR_H
#define MSRT_CORE_ERROR_H

#include <stdarg.h>
#include <stddef.h>

typedef enum {
  MSRT_CAT_RUNTIME, MSRT_CAT_SUPERVISION, MSRT_CAT_CONFIG, MSRT_CAT_RESOURCE,
  MSRT_CAT_NETWORK, MSRT_CAT_PROCESS, MSRT_CAT_ROUTER, MSRT_CAT_ACTOR,
  MSRT_CAT_TASK, MSRT_CAT_HEALTH, MSRT_CAT__COUNT
} msrt_category;

typedef enum {
  MSRT_SEV_LOW, MSRT_SEV_MEDIUM, MSRT_SEV_HIGH, MSRT_SEV_CRITICAL, MSRT_SEV__COUNT
} msrt_severity;

typedef enum {
  MSRT_REC_RETRY, MSRT_REC_RESTART, MSRT_REC_ESCALATE, MSRT_REC_RELOAD,
  MSRT_REC_CIRCUIT_BREAKER, MSRT_REC_FAILOVER, MSRT_REC_IGNORE, MSRT_REC__COUNT
} msrt_recovery;

/* X(enum suffix, code name, category, severity, recovery) */
#define MSRT_ERROR_CODES(X)                                                   \
  X(OK,             "ok",             RUNTIME,  LOW,      IGNORE)            \
  X(INTERNAL,       "internal",       RUNTIME,  CRITICAL, ESCALATE)          \
  X(NOMEM,          "nomem",          RESOURCE, CRITICAL, ESCALATE)          \
  X(RESOURCE_EXHAUSTED, "resource_exhausted", RESOURCE, HIGH, RETRY)         \
  X(INVALID_ARG,    "invalid_arg",    RUNTIME,  MEDIUM,   IGNORE)            \
  X(BAD_CONFIG,     "bad_config",     CONFIG,   HIGH,     RELOAD)            \
  X(BAD_PROFILE,    "bad_profile",    CONFIG,   HIGH,     RELOAD)            \
  X(SYNTAX,         "syntax",         CONFIG,   HIGH,     RELOAD)            \
  X(NOT_FOUND,      "not_found",      CONFIG,   MEDIUM,   IGNORE)            \
  X(IO,             "io",             RESOURCE, MEDIUM,   RETRY)             \
  X(LIMIT,          "limit",          RESOURCE, MEDIUM,   IGNORE)            \
  X(INVALID_SUBJECT,"invalid_subject",ROUTER,   MEDIUM,   IGNORE)            \
  X(PAYLOAD_TOO_BIG,"payload_too_big",ROUTER,   MEDIUM,   IGNORE)            \
  X(PERMISSION,     "permission",     ROUTER,   MEDIUM,   IGNORE)            \
  X(NO_RESPONDERS,  "no_responders",  ROUTER,   MEDIUM,   RETRY)             \
  X(TIMEOUT,        "timeout",        TASK,     MEDIUM,   RETRY)             \
  X(MAILBOX_FULL,   "mailbox_full",   ROUTER,   MEDIUM,   CIRCUIT_BREAKER)   \
  X(CLOSED,         "closed",         RUNTIME,  LOW,      IGNORE)            \
  X(ACTOR_FAILED,   "actor_failed",   ACTOR,    HIGH,     RESTART)           \
  X(SPAWN_FAILED,   "spawn_failed",   PROCESS,  HIGH,     RESTART)           \
  X(PROCESS_EXIT,   "process_exit",   PROCESS,  HIGH,     RESTART)           \
  X(BAD_INPUT,      "bad_input",      PROCESS,  LOW,      IGNORE)            \
  X(RPC_ERROR,      "rpc_error",      PROCESS,  MEDIUM,   IGNORE)            \
  X(INTENSITY,      "intensity",      SUPERVISION, CRITICAL, ESCALATE)       \
  X(START_FAILED,   "start_failed",   SUPERVISION, HIGH,  ESCALATE)          \
  X(STRATEGY_FAILED,"strategy_failed",SUPERVISION, HIGH,  ESCALATE)          \
  X(UNHEALTHY,      "unhealthy",      HEALTH,   HIGH,     RESTART)           \
  X(NETWORK,        "network",        NETWORK,  MEDIUM,   RETRY)

typedef enum {
#define MSRT_X(e, name, cat, sev, rec) MSRT_E_##e,
  MSRT_ERROR_CODES(MSRT_X)
#undef MSRT_X
  MSRT_E__COUNT
} msrt_code;

/* Bytes kept of an error message, terminator included; longer ones are cut. */
#define MSRT_ERROR_MSG_MAX 512

typedef struct {
  msrt_code code;
  msrt_category category;
  msrt_severity severity;
  msrt_recovery recovery;
  char message[MSRT_ERROR_MSG_MAX];
} msrt_error;

/* Names as docs/errors.md spells them: "router", "high", "circuit_breaker"...
 * Out-of-range values return "unknown". */
const char *msrt_code_name(msrt_code code);
const char *msrt_category_name(msrt_category c);
const char *msrt_severity_name(msrt_severity s);
const char *msrt_recovery_name(msrt_recovery r);

/* Look a code up by its name; returns MSRT_E__COUNT when there is none. */
msrt_code msrt_code_from_name(const char *name);

/* Fill *err with code's defaults and a printf-style message; returns code so
 * that `return msrt_error_set(err, ...)` reads naturally. err may be NULL
 * (the error is then only returned). */
msrt_code msrt_error_set(msrt_error *err, msrt_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
msrt_code msrt_error_vset(msrt_error *err, msrt_code code, const char *fmt,
                          va_list ap);

/* "<category>/<code>: <message>" into buf (size bytes, always terminated);
 * returns buf. */
char *msrt_error_format(const msrt_error *err, char *buf, size_t size);

#endif
