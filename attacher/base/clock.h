/* SPDX-License-Identifier: MIT */
/*
 * The attacher's one clock: CLOCK_MONOTONIC in nanoseconds, for every
 * timeout, delay and duration it measures (freezes, remote calls, the
 * tracking loop, the heap census).  Its own module so that what measures
 * time need not link the ptrace layer (the fuzzers link this alone).
 */
#ifndef MA_CLOCK_H
#define MA_CLOCK_H

#include <stdint.h>

uint64_t ma_now_ns(void);

#endif
