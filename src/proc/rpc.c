#include "proc/rpc.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const cJSON *member(const cJSON *v, const char *k) {
  return cJSON_GetObjectItemCaseSensitive(v, k);
}

static bool integral(const cJSON *n) {
  return cJSON_IsNumber(n) && isfinite(n->valuedouble) &&
         n->valuedouble == floor(n->valuedouble);
}

static void invalid(msrt_rpc_msg *m, const char *why) {
  m->kind = MSRT_RPC_INVALID;
  m->why = why;
}

static void classify_response(const cJSON *v, msrt_rpc_msg *m) {
  m->result = member(v, "result");
  m->error = member(v, "error");
  if (!m->id) return invalid(m, "a response without an id");
  if (!m->result == !m->error)
    return invalid(m, "a response needs exactly one of result and error");
  if (m->error && (!cJSON_IsObject(m->error) ||
                   !integral(member(m->error, "code")) ||
                   !cJSON_IsString(member(m->error, "message"))))
    return invalid(m, "error must be an object with an integer code and a "
                      "string message");
  m->kind = MSRT_RPC_RESPONSE;
}

void msrt_rpc_classify(const cJSON *v, msrt_rpc_msg *m) {
  memset(m, 0, sizeof *m);
  if (!cJSON_IsObject(v)) return invalid(m, "not a JSON-RPC object");
  const cJSON *ver = member(v, "jsonrpc");
  if (!cJSON_IsString(ver) || strcmp(ver->valuestring, "2.0") != 0)
    return invalid(m, "jsonrpc must be \"2.0\"");
  m->id = member(v, "id");
  if (m->id && !cJSON_IsString(m->id) && !cJSON_IsNumber(m->id) &&
      !cJSON_IsNull(m->id))
    return invalid(m, "id must be a string, a number or null");
  const cJSON *method = member(v, "method");
  if (!method) return classify_response(v, m);
  if (!cJSON_IsString(method) || !*method->valuestring)
    return invalid(m, "method must be a non-empty string");
  m->method = method->valuestring;
  m->params = member(v, "params");
  if (m->params && !cJSON_IsObject(m->params) && !cJSON_IsArray(m->params))
    return invalid(m, "params must be an object or an array");
  m->kind = m->id ? MSRT_RPC_REQUEST : MSRT_RPC_NOTIFICATION;
}

bool msrt_rpc_our_id(const cJSON *id, uint64_t *out) {
  if (!integral(id) || id->valuedouble < 1 || id->valuedouble > 9007199254740991.0)
    return false;
  *out = (uint64_t)id->valuedouble;
  return true;
}

static void head(msrt_sbuf *b) { msrt_sbuf_put(b, "{\"jsonrpc\":\"2.0\"", 16); }

void msrt_rpc_put_call(msrt_sbuf *b, uint64_t id, const char *m, size_t mlen,
                       const char *params, size_t plen) {
  head(b);
  if (id) {
    char num[32];
    int n = snprintf(num, sizeof num, ",\"id\":%llu", (unsigned long long)id);
    msrt_sbuf_put(b, num, (size_t)n);
  }
  msrt_sbuf_put(b, ",\"method\":", 10);
  msrt_json_put_string(b, m, mlen);
  if (params && plen) {
    msrt_sbuf_put(b, ",\"params\":", 10);
    msrt_sbuf_put(b, params, plen);
  }
  msrt_sbuf_putc(b, '}');
}

static void put_id(msrt_sbuf *b, const char *id, size_t ilen) {
  msrt_sbuf_put(b, ",\"id\":", 6);
  msrt_sbuf_put(b, id, ilen);
}

void msrt_rpc_put_result(msrt_sbuf *b, const char *id, size_t ilen,
                         const char *result, size_t rlen) {
  head(b);
  put_id(b, id, ilen);
  msrt_sbuf_put(b, ",\"result\":", 10);
  if (rlen) msrt_sbuf_put(b, result, rlen);
  else msrt_sbuf_put(b, "null", 4);
  msrt_sbuf_putc(b, '}');
}

void msrt_rpc_put_error(msrt_sbuf *b, const char *id, size_t ilen,
                        long code, const char *msg, size_t mlen,
                        const char *data, size_t dlen) {
  char num[32];
  int n = snprintf(num, sizeof num, "%ld", code);
  head(b);
  put_id(b, id, ilen);
  msrt_sbuf_put(b, ",\"error\":{\"code\":", 17);
  msrt_sbuf_put(b, num, (size_t)n);
  msrt_sbuf_put(b, ",\"message\":", 11);
  msrt_json_put_string(b, msg, mlen);
  if (dlen) {
    msrt_sbuf_put(b, ",\"data\":", 8);
    msrt_sbuf_put(b, data, dlen);
  }
  msrt_sbuf_put(b, "}}", 2);
}
