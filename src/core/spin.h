/* A byte spinlock, for critical sections of a few instructions that are
 * rarely contended (a mailbox's eviction, a list of waiting senders),
 * where a mutex's syscall on contention would cost more than it saves.
 * Thread-safety: any thread. */
#ifndef MSRT_CORE_SPIN_H
#define MSRT_CORE_SPIN_H

#include <stdatomic.h>

/* Tell the CPU we are spinning (frees the sibling hyper-thread). */
static inline void msrt_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* Acquire l (0 = free, 1 = held): an exchange, then plain loads while it
 * is held, so waiters do not bounce the line with writes. */
static inline void msrt_spin_lock(atomic_uchar *l) {
  while (atomic_exchange_explicit(l, 1, memory_order_acquire))
    while (atomic_load_explicit(l, memory_order_relaxed)) msrt_cpu_relax();
}

static inline void msrt_spin_unlock(atomic_uchar *l) {
  atomic_store_explicit(l, 0, memory_order_release);
}

#endif
