/* The message envelope (docs/architecture.md "Threads and the path of a message").
 *
 * An envelope is immutable once made and shared by reference count: one
 * publish makes one envelope, and each matched endpoint holds a reference.
 * Subject, reply, headers and payload live in the same allocation as the
 * header struct, so making one is one allocation and freeing one is one
 * free (core/envcache.h: a cache per thread in front of core/mem.h).
 *
 * Payload and headers are opaque bytes to the core; the Lua layer stores
 * LuaJIT string.buffer encodings in them, the process layer JSON text.
 *
 * Thread-safety: msrt_env_ref/unref are atomic; every other field is
 * read-only after msrt_env_new returns, so any thread may read it.
 */
#ifndef MSRT_CORE_ENVELOPE_H
#define MSRT_CORE_ENVELOPE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define MSRT_PRIORITY_HIGHEST 1
#define MSRT_PRIORITY_DEFAULT 5
#define MSRT_PRIORITY_LOWEST 10

typedef struct msrt_envelope {
  atomic_uint refs;
  uint8_t priority;     /* 1 (highest) .. 10 (lowest) */
  uint8_t flags;        /* MSRT_ENV_* */
  uint16_t home;        /* the allocator's: which thread's cache the
                           block goes back to (core/envcache.h) */
  uint32_t subject_len; /* bytes, without the terminator */
  uint32_t reply_len;   /* 0 when there is no reply subject */
  uint32_t headers_len; /* bytes of encoded headers; 0 = none */
  uint32_t payload_len; /* bytes */
  uint64_t id;          /* unique within the process, never 0; increasing
                           per thread (not across threads) */
  uint64_t trace_id;    /* 0 = none; copied from a request to its reply */
  uint64_t ts_ns;       /* wall-clock time it was made, ns since the epoch,
                           to the kernel's tick (msrt_wall_coarse_ns) */
  const char *subject;  /* NUL-terminated, inside data[] */
  const char *reply;    /* NUL-terminated, inside data[]; NULL = none */
  const unsigned char *headers; /* inside data[]; NULL when headers_len 0 */
  const unsigned char *payload; /* inside data[] */
  /* When the reply subject stops being valid: the request's deadline,
   * CLOCK_MONOTONIC ns (msrt_now_ns); 0 = no deadline (a plain publish
   * with a reply). A process handed the reply may publish to it once,
   * until then (NATS allow_responses' expiry). 0 from msrt_env_new; the
   * maker may set it before the envelope is published. */
  uint64_t reply_deadline_ns;
  unsigned char data[];
} msrt_envelope;

/* Flags describing how the payload is encoded (for readers that care). */
#define MSRT_ENV_PAYLOAD_BUFFER 0x01 /* LuaJIT string.buffer encoding */
#define MSRT_ENV_PAYLOAD_JSON 0x02   /* JSON text */
/* A durable queue's PubAck to an actor (lua/msrt/queue.lua, through the
 * hub-only binding queue_puback): no other publisher (an actor, a
 * process, a NATS client, the bridge) makes envelopes with it, so an
 * actor waiting for a PubAck can tell the queue's answer from anyone
 * else's on the same reply subject. */
#define MSRT_ENV_PUBACK 0x04

/* Make an envelope with one reference. subject is required (slen bytes);
 * reply may be NULL; headers/payload may be NULL when their length is 0.
 * payload NULL with plen > 0 leaves the plen bytes unwritten: the maker
 * writes them (msrt_env_payload_to_write) before anyone else sees it, so a
 * payload made of pieces is copied once, not assembled and copied.
 * priority outside 1..10 is clamped. trace_id 0 means "new trace" (the id
 * is used). Returns NULL when out of memory. Validation of subjects is the
 * router's job, not this function's. */
msrt_envelope *msrt_env_new(const char *subject, size_t slen,
                            const char *reply, size_t rlen,
                            const void *headers, size_t hlen,
                            const void *payload, size_t plen,
                            int priority, uint8_t flags, uint64_t trace_id);

/* Fill *v as msrt_env_new would make an envelope (a new id and trace,
 * priority clamped), but over the caller's bytes, nothing copied and
 * nothing allocated: a view for a publish whose endpoints may only borrow
 * it (bus/bus.h msrt_bus_send). Its time stamp stays 0 until
 * msrt_env_copy makes it real. Its one reference is never dropped; nobody
 * may keep it past the caller's frame. The lengths must fit in 32 bits. */
void msrt_env_view(msrt_envelope *v, const char *subject, size_t slen,
                   const char *reply, size_t rlen, const void *headers,
                   size_t hlen, const void *payload, size_t plen, int priority,
                   uint8_t flags, uint64_t trace_id);

/* An envelope (one reference) with v's bytes and v's id, trace, time
 * stamp (now, when v has none), priority, flags and reply deadline: a
 * view made real. NULL when out of memory. */
msrt_envelope *msrt_env_copy(const msrt_envelope *v);

static inline msrt_envelope *msrt_env_ref(msrt_envelope *e) {
  atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
  return e;
}

/* Bytes the envelope holds (its one allocation: header, subject, reply,
 * headers, payload): what a mailbox or stdin queue's byte bound counts
 * for it. Any thread (the fields are read-only). */
static inline size_t msrt_env_size(const msrt_envelope *e) {
  return sizeof *e + e->subject_len + 1 + (e->reply ? e->reply_len + 1 : 0) +
         e->headers_len + e->payload_len;
}

/* The payload of e, just made with payload NULL (msrt_env_new), for its
 * maker to write before the envelope is published or shared. */
static inline unsigned char *msrt_env_payload_to_write(msrt_envelope *e) {
  return e->data + (e->payload - e->data);
}

/* Drop one reference; frees the envelope at zero. NULL is ignored. */
void msrt_env_unref(msrt_envelope *e);

/* Number of envelopes alive in the process (for leak checks in tests). */
long msrt_env_live(void);

#endif
