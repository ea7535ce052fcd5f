/* The tag that tells msrt's libuv handles from luv's on the one hub loop.
 *
 * Every handle on the hub loop that is not luv's (the hub's own, a
 * process's pipes and timers, the runtime's) must have `data` pointing to
 * a struct whose first member is this unsigned tag. luv keeps a small
 * registry index there (luv asserts it is below 0x1000000), so the tag
 * tells the two apart when shutdown closes luv's handles through luv
 * (hub/hub.h msrt_hub_close_all).
 */
#ifndef MSRT_CORE_HANDLE_H
#define MSRT_CORE_HANDLE_H

#define MSRT_HANDLE_MAGIC 0x6d737274u /* "msrt" */

#endif
