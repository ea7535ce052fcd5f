#include "core/error.h"

#include <stdio.h>
#include <string.h>

typedef struct {
  const char *name;
  msrt_category cat;
  msrt_severity sev;
  msrt_recovery rec;
} code_info;

static const code_info codes[] = {
#define MSRT_X(e, n, c, s, r) {n, MSRT_CAT_##c, MSRT_SEV_##s, MSRT_REC_##r},
  MSRT_ERROR_CODES(MSRT_X)
#undef MSRT_X
};

static const char *const categories[] = {
  "runtime", "supervision", "config", "resource", "network",
  "process", "router", "actor", "task", "health"};
static const char *const severities[] = {"low", "medium", "high", "critical"};
static const char *const recoveries[] = {
  "retry", "restart", "escalate", "reload", "circuit_breaker", "failover",
  "ignore"};

_Static_assert(sizeof categories / sizeof *categories == MSRT_CAT__COUNT,
               "category names");
_Static_assert(sizeof severities / sizeof *severities == MSRT_SEV__COUNT,
               "severity names");
_Static_assert(sizeof recoveries / sizeof *recoveries == MSRT_REC__COUNT,
               "recovery names");

const char *msrt_code_name(msrt_code c) {
  return (unsigned)c < MSRT_E__COUNT ? codes[c].name : "unknown";
}
const char *msrt_category_name(msrt_category c) {
  return (unsigned)c < MSRT_CAT__COUNT ? categories[c] : "unknown";
}
const char *msrt_severity_name(msrt_severity s) {
  return (unsigned)s < MSRT_SEV__COUNT ? severities[s] : "unknown";
}
const char *msrt_recovery_name(msrt_recovery r) {
  return (unsigned)r < MSRT_REC__COUNT ? recoveries[r] : "unknown";
}

msrt_code msrt_code_from_name(const char *name) {
  for (int i = 0; i < MSRT_E__COUNT; i++)
    if (strcmp(codes[i].name, name) == 0) return (msrt_code)i;
  return MSRT_E__COUNT;
}

msrt_code msrt_error_vset(msrt_error *err, msrt_code code, const char *fmt,
                          va_list ap) {
  if (!err) return code;
  if ((unsigned)code >= MSRT_E__COUNT) code = MSRT_E_INTERNAL;
  err->code = code;
  err->category = codes[code].cat;
  err->severity = codes[code].sev;
  err->recovery = codes[code].rec;
  vsnprintf(err->message, sizeof err->message, fmt, ap);
  return code;
}

msrt_code msrt_error_set(msrt_error *err, msrt_code code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  msrt_error_vset(err, code, fmt, ap);
  va_end(ap);
  return code;
}

char *msrt_error_format(const msrt_error *err, char *buf, size_t size) {
  if (size == 0) return buf;
  snprintf(buf, size, "%s/%s: %s", msrt_category_name(err->category),
           msrt_code_name(err->code), err->message);
  return buf;
}
