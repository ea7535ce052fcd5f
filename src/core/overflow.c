#include "core/overflow.h"

#include <stddef.h>

const char *const msrt_overflow_names[] = {"block", "drop_oldest",
                                           "drop_newest", "error", NULL};
