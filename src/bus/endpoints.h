/* The runtime's endpoint classes (bus/endpoint.h), each built over the
 * object it pushes to:
 *
 *   actor    an actor's normal mailbox (sched/sched.h: bounded, overflow
 *            policy); the object is the actor cell
 *   sys      an actor's sys lane (its request inbox: replies; never full)
 *   process  a child process's stdin gate (proc/gate.h). The publishing
 *            thread takes a slot of the gate, so a full stdin queue meets
 *            the sender's policy on its own thread (drop_newest drops,
 *            `error` refuses, `block` waits as for a mailbox); then the
 *            envelope goes through the hub inbox (MSRT_IN_PROC, target =
 *            the process id) and the hub writes it to the pipe, giving the
 *            slot back once written
 *   hub      a hub callback: the envelope goes through the hub inbox
 *            (MSRT_IN_DELIVER, target = the hub subscription id)
 *   stamp    a time stamp: push stores msrt_now_ns() into the
 *            _Atomic uint64_t the object points to (heartbeat probes:
 *            nothing reaches the hub); the subscriber frees the slot with
 *            msrt_router_defer after unsubscribing
 *
 * Thread-safety: the constructors and every operation, any thread.
 */
#ifndef MSRT_BUS_ENDPOINTS_H
#define MSRT_BUS_ENDPOINTS_H

#include <stdatomic.h>
#include <stdint.h>

#include "bus/endpoint.h"
#include "proc/gate.h"
#include "sched/sched.h"

msrt_endpoint msrt_ep_actor(msrt_actor *cell);
msrt_endpoint msrt_ep_sys(msrt_actor *cell);
msrt_endpoint msrt_ep_gate(msrt_gate *gate);
msrt_endpoint msrt_ep_hub(uint64_t hub_id);
msrt_endpoint msrt_ep_stamp(_Atomic uint64_t *slot);

#endif
