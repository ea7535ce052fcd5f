/* src/proc/gate.c: a process's stdin gate (the slots publishers take on
 * their own threads), and the waitlist it shares with actor mailboxes. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "ctest.h"
#include "proc/gate.h"

static int calls;
static void count_call(void *ud) {
  calls++;
  if (ud) (*(int *)ud)++;
}

static void test_take_and_give(void) {
  msrt_gate *g = msrt_gate_new(3, 0, MSRT_OVERFLOW_ERROR, 42, "worker");
  CHECK(msrt_gate_capacity(g) == 3 && msrt_gate_proc_id(g) == 42);
  CHECK_STR(msrt_gate_name(g), "worker");
  CHECK(msrt_gate_policy(g) == MSRT_OVERFLOW_ERROR);
  for (int i = 0; i < 3; i++) CHECK(msrt_gate_take(g, 1) == MSRT_E_OK);
  CHECK(msrt_gate_full(g) && msrt_gate_count(g) == 3);
  CHECK(msrt_gate_take(g, 1) == MSRT_E_MAILBOX_FULL);
  CHECK(msrt_gate_count(g) == 3); /* a failed take leaves nothing held */
  msrt_gate_give(g, 2, 2);
  CHECK(!msrt_gate_full(g) && msrt_gate_count(g) == 1);
  CHECK(msrt_gate_take(g, 1) == MSRT_E_OK);
  msrt_gate_unref(g);

  /* drop_oldest: a take always succeeds (the queue evicts instead) */
  g = msrt_gate_new(1, 0, MSRT_OVERFLOW_DROP_OLDEST, 1, "x");
  for (int i = 0; i < 5; i++) CHECK(msrt_gate_take(g, 1) == MSRT_E_OK);
  CHECK(msrt_gate_count(g) == 5);
  msrt_gate_unref(g);

  /* capacity 0 is the default; a long name is cut */
  char name[100];
  memset(name, 'n', sizeof name - 1);
  name[sizeof name - 1] = 0;
  g = msrt_gate_new(0, 0, MSRT_OVERFLOW_BLOCK, 1, name);
  CHECK(msrt_gate_capacity(g) == 1024 && strlen(msrt_gate_name(g)) == 63);
  msrt_gate_unref(g);
}

static void test_waiters(void) {
  msrt_gate *g = msrt_gate_new(1, 0, MSRT_OVERFLOW_BLOCK, 1, "w");
  int a = 0, b = 0;
  CHECK(msrt_gate_wait_room(g, count_call, &a) == MSRT_E_OK); /* room now */
  CHECK(msrt_gate_take(g, 1) == MSRT_E_OK);
  CHECK(msrt_gate_wait_room(g, count_call, &a) == MSRT_WAIT_PENDING);
  CHECK(msrt_gate_wait_room(g, count_call, &b) == MSRT_WAIT_PENDING);
  /* a failed take's undo leaves the gate full: nobody is woken (two
   * blocked senders would otherwise wake each other forever) */
  CHECK(msrt_gate_take(g, 1) == MSRT_E_MAILBOX_FULL);
  CHECK(a == 0 && b == 0);
  CHECK(msrt_gate_cancel_wait(g, count_call, &b));
  CHECK(!msrt_gate_cancel_wait(g, count_call, &b));
  msrt_gate_give(g, 1, 1);
  CHECK(a == 1 && b == 0); /* once, and not the cancelled one */
  msrt_gate_give(g, 0, 0);
  CHECK(a == 1);
  CHECK(!msrt_gate_cancel_wait(g, count_call, &a)); /* already called */

  /* close wakes the waiters; then takes and waits meet it closed */
  CHECK(msrt_gate_take(g, 1) == MSRT_E_OK);
  CHECK(msrt_gate_wait_room(g, count_call, &b) == MSRT_WAIT_PENDING);
  msrt_gate_close(g);
  CHECK(b == 1);
  CHECK(msrt_gate_take(g, 1) == MSRT_E_CLOSED);
  CHECK(msrt_gate_wait_room(g, count_call, &b) == MSRT_E_CLOSED);
  msrt_gate_close(g); /* idempotent */
  CHECK(b == 1);
  msrt_gate_unref(g);
}

static void test_lifetime_and_notes(void) {
  msrt_gate *g = msrt_gate_new(1, 0, MSRT_OVERFLOW_BLOCK, 1, "l");
  msrt_gate_ref(g); /* a subscription's */
  msrt_gate_note(g, MSRT_GATE_BLOCKED);
  msrt_gate_note(g, MSRT_GATE_REFUSED);
  msrt_gate_note(g, MSRT_GATE_REFUSED);
  msrt_gate_note(g, MSRT_GATE_DROPPED);
  msrt_gate_stats st;
  msrt_gate_get_stats(g, &st);
  CHECK(st.blocked == 1 && st.refused == 2 && st.dropped == 1);
  msrt_gate_unref(g); /* the process's: the gate lives on */
  CHECK(msrt_gate_take(g, 1) == MSRT_E_OK);
  calls = 0;
  CHECK(msrt_gate_wait_room(g, count_call, NULL) == MSRT_WAIT_PENDING);
  msrt_gate_unref(g); /* the last: the waiter is freed, never called */
  CHECK(calls == 0);
  msrt_gate_unref(NULL);
}

/* Threads: producers take (waiting for room like a `block` publisher when
 * the gate is full), a consumer gives back. Slots held never exceed the
 * capacity, and no wake-up is lost (a lost one would hang a producer). */
enum { PRODUCERS = 4, EACH = 20000, CAP = 8 };

static msrt_gate *G;
static atomic_int held, max_held, to_give, waits;
static atomic_long given;

static void set_flag(void *ud) { atomic_store((atomic_int *)ud, 1); }

static void take_waiting(void) {
  while (msrt_gate_take(G, 1) != MSRT_E_OK) {
    atomic_int woken = 0;
    if (msrt_gate_wait_room(G, set_flag, &woken) != MSRT_WAIT_PENDING)
      continue;
    atomic_fetch_add(&waits, 1);
    while (!atomic_load(&woken)) sched_yield();
  }
}

static void *producer(void *arg) {
  (void)arg;
  for (int i = 0; i < EACH; i++) {
    take_waiting();
    int h = atomic_fetch_add(&held, 1) + 1;
    int m = atomic_load(&max_held);
    while (h > m && !atomic_compare_exchange_weak(&max_held, &m, h)) {
    }
    atomic_fetch_add(&to_give, 1);
  }
  return NULL;
}

static void *consumer(void *arg) {
  (void)arg;
  while (atomic_load(&given) < (long)PRODUCERS * EACH) {
    int n = atomic_load(&to_give);
    if (!n) {
      sched_yield();
      continue;
    }
    atomic_fetch_sub(&to_give, n);
    atomic_fetch_sub(&held, n);
    msrt_gate_give(G, (size_t)n, (size_t)n);
    atomic_fetch_add(&given, n);
  }
  return NULL;
}

static void test_threads(void) {
  G = msrt_gate_new(CAP, 0, MSRT_OVERFLOW_BLOCK, 1, "t");
  pthread_t p[PRODUCERS], c;
  pthread_create(&c, NULL, consumer, NULL);
  for (int i = 0; i < PRODUCERS; i++) pthread_create(&p[i], NULL, producer, NULL);
  for (int i = 0; i < PRODUCERS; i++) pthread_join(p[i], NULL);
  pthread_join(c, NULL);
  CHECK(atomic_load(&given) == (long)PRODUCERS * EACH);
  CHECK(atomic_load(&max_held) <= CAP);
  CHECK(msrt_gate_count(G) == 0);
  printf("threads: %d waits for room, at most %d held\n", atomic_load(&waits),
         atomic_load(&max_held));
  msrt_gate_unref(G);
}

/* The byte bound: a take fails once the bytes held reach it, whatever the
 * count (so at most the bound plus one line is held); a recharge moves the
 * count to the line's real size; giving bytes back wakes a waiter only
 * when that left room. */
static void test_bytes(void) {
  msrt_gate *g = msrt_gate_new(100, 1000, MSRT_OVERFLOW_BLOCK, 1, "b");
  CHECK(msrt_gate_max_bytes(g) == 1000);
  CHECK(msrt_gate_take(g, 600) == MSRT_E_OK);
  CHECK(msrt_gate_take(g, 600) == MSRT_E_OK); /* 600 < 1000 held: admitted */
  CHECK(msrt_gate_bytes(g) == 1200 && msrt_gate_full(g));
  CHECK(msrt_gate_take(g, 1) == MSRT_E_MAILBOX_FULL);
  CHECK(msrt_gate_bytes(g) == 1200 && msrt_gate_count(g) == 2);
  int a = 0;
  CHECK(msrt_gate_wait_room(g, count_call, &a) == MSRT_WAIT_PENDING);
  msrt_gate_recharge(g, 600, 700); /* the line came out longer */
  CHECK(msrt_gate_bytes(g) == 1300 && a == 0);
  msrt_gate_give(g, 1, 200); /* 1100 left: still full, nobody woken */
  CHECK(a == 0);
  msrt_gate_recharge(g, 1100, 900); /* now there is room */
  CHECK(a == 1 && !msrt_gate_full(g));
  msrt_gate_give(g, 1, 900);
  CHECK(msrt_gate_bytes(g) == 0 && msrt_gate_count(g) == 0);
  msrt_gate_unref(g);
  /* drop_oldest takes always succeed; 0 is the default bound */
  g = msrt_gate_new(1, 0, MSRT_OVERFLOW_DROP_OLDEST, 1, "d");
  CHECK(msrt_gate_max_bytes(g) == MSRT_GATE_DEFAULT_BYTES);
  CHECK(msrt_gate_take(g, MSRT_GATE_DEFAULT_BYTES) == MSRT_E_OK);
  CHECK(msrt_gate_take(g, 1) == MSRT_E_OK);
  msrt_gate_unref(g);
}

TEST_MAIN(test_take_and_give, test_waiters, test_lifetime_and_notes,
          test_threads, test_bytes)
