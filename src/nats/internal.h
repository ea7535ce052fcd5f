/* The nats part's own structures (nats/conn.h is its public face). */
#ifndef MSRT_NATS_INTERNAL_H
#define MSRT_NATS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "bus/endpoint.h"
#include "nats/conn.h"
#include "proc/codec.h"

typedef struct nats_sub nats_sub;

/* The sid -> subscription table of one connection (hub thread). */
typedef struct {
  nats_sub **slot;
  size_t cap, n;
} sid_table;

struct msrt_nats_server {
  unsigned magic; /* MSRT_HANDLE_MAGIC: the handles' data (hub/hub.h) */
  uv_loop_t *loop;
  msrt_bus *bus;
  msrt_nats_opts opts;   /* hub thread */
  atomic_size_t max_pending; /* opts.max_pending, for the push path */
  msrt_nats_auth auth;
  bool has_auth;
  atomic_uint refs;     /* 1 while open + 1 per connection */
  int handles_open;     /* async + timer, until their close callbacks */
  bool closing;
  uv_async_t wake;      /* flush what other threads delivered */
  uv_timer_t sweep;     /* keep-alive and write deadline */
  pthread_mutex_t mu;   /* dirty */
  msrt_nats_conn **dirty;
  size_t ndirty, capdirty;
  msrt_nats_conn *conns; /* every open connection (hub thread) */
  uint64_t next_id;
  msrt_nats_stats stats; /* hub-thread counters */
  atomic_ullong out_msgs, out_bytes;
  char server_id[24];
};

struct msrt_nats_conn {
  atomic_uint refs; /* transport + subscriptions + dirty-list entries */
  msrt_nats_server *srv;
  const msrt_nats_transport *tp;
  void *t;
  uint64_t id;
  msrt_nats_conn *prev, *next; /* the server's list, while open */
  /* hub thread */
  msrt_nats_parser parser;
  msrt_nats_connect opts;
  bool connected;     /* CONNECT seen */
  bool closed;        /* close began: no more tp calls */
  bool reap;          /* a subscription reached its max_msgs */
  int pings_out;
  uint64_t last_ping_ns, stall_since_ns;
  sid_table subs;
  msrt_nats_perms *perms; /* written under mu (deny.c), read on the hub */
  bool no_echo;       /* CONNECT echo: false */
  const char *pub_subject; /* the PUB being published (permit_pub) */
  size_t pub_len;
  char user[64];
  msrt_sbuf scratch, hscratch; /* a PUB's payload and header encodings */
  msrt_sbuf wbuf;              /* what a flush is writing */
  /* any thread, under mu */
  pthread_mutex_t mu;
  msrt_sbuf out;       /* written by push and by the hub, flushed on hub */
  bool dirty;          /* on the server's dirty list */
  bool shut;           /* no more deliveries */
  bool slow;           /* over max_pending: end as a slow consumer */
  bool headers;        /* the client takes HMSG */
  struct nats_dcache *dcache; /* deny.c's subjects decided, or NULL */
  /* allow_responses (nats/auth.h): the reply subjects this client was
   * handed, each publishable resp_max times until its deadline */
  int resp_max;        /* 0: not tracked */
  uint64_t resp_ttl_ns; /* 0: no expiry */
  struct nats_resp *resp;
  size_t nresp, capresp;
  atomic_size_t tp_queued; /* the transport's queue at the last look */
};

struct nats_sub {
  atomic_uint refs; /* the table's + the router's */
  msrt_nats_conn *conn;
  uint64_t bus_id;
  atomic_llong count; /* messages taken */
  atomic_llong max;   /* UNSUB max_msgs; -1 none */
  atomic_bool filtered; /* deliveries checked against the deny list */
  char *subject, *queue;
  size_t sid_len;
  char sid[];
};

/* The endpoint of a subscription (sub.c). */
msrt_endpoint msrt_nats_ep(nats_sub *s);
nats_sub *msrt_nats_sub_new(msrt_nats_conn *c, const char *sid, size_t n,
                            const char *subject, size_t slen,
                            const char *queue, size_t qlen);
void msrt_nats_sub_unref(nats_sub *s);

/* The connection whose PUB this thread is publishing (cmd.c sets it on
 * the hub around the publish; NULL elsewhere): its own subscriptions
 * decline the message when it said echo: false. */
extern _Thread_local msrt_nats_conn *msrt_nats_publishing;

/* The deny filter (deny.c): swap c's permissions (hub thread; the old
 * ones given back, the cache dropped), set whether s's deliveries are
 * checked (hub thread, from its connection's permissions), check one
 * delivery (any thread), free the cache (closing). */
void msrt_nats_conn_set_perms(msrt_nats_conn *c, msrt_nats_perms *p);
void msrt_nats_sub_filter(nats_sub *s);
bool msrt_nats_sub_denies(nats_sub *s, const char *subject, size_t n);
void msrt_nats_deny_free(msrt_nats_conn *c);

/* FNV-1a of n bytes (sub.c): the sid table's and the deny cache's. */
size_t msrt_nats_hash(const char *s, size_t n);

/* The sid table (sub.c). */
nats_sub *msrt_sid_get(sid_table *t, const char *sid, size_t n);
int msrt_sid_put(sid_table *t, nats_sub *s);
void msrt_sid_del(sid_table *t, nats_sub *s);
void msrt_sid_free(sid_table *t);

/* allow_responses (resp.c): remember a reply subject handed to c (c->mu
 * held); take one use of it (hub thread; true when it was allowed);
 * set the rules from c->perms (hub thread); forget everything. */
void msrt_nats_resp_note(msrt_nats_conn *c, const char *reply, size_t n);
bool msrt_nats_resp_take(msrt_nats_conn *c, const char *subject, size_t n);
void msrt_nats_resp_rules(msrt_nats_conn *c);
void msrt_nats_resp_free(msrt_nats_conn *c);

/* Connections (conn.c). */
void msrt_nats_conn_ref(msrt_nats_conn *c);
void msrt_nats_conn_unref(msrt_nats_conn *c);
/* Write what is pending through the transport (hub thread). */
void msrt_nats_conn_flush(msrt_nats_conn *c);
/* Queue a flush on the hub (any thread; called with c->mu held once
 * c->dirty was set by the caller). */
void msrt_nats_server_mark(msrt_nats_server *s, msrt_nats_conn *c);
/* Flush every connection with something pending now (hub thread): after
 * a client's bytes were handled, what they delivered to other clients
 * goes out in the same loop turn instead of the wake-up's next one. */
void msrt_nats_server_flush(msrt_nats_server *s);
/* Append to the connection's pending bytes and queue a flush (hub). */
void msrt_nats_conn_send(msrt_nats_conn *c, const char *buf, size_t len);
/* The sweep's look at one connection (conn.c). */
void msrt_nats_conn_sweep(msrt_nats_conn *c, uint64_t now_ns);
/* Announce on a msrt.nats.* subject (server.c; hub thread). */
void msrt_nats_announce(msrt_nats_server *s, const char *subject,
                        const char *text);
void msrt_nats_server_unref(msrt_nats_server *s);

#endif
