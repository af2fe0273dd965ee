/* SPDX-License-Identifier: MIT */
/* The fuzz build's target memory (fuzz_memread.c) */
#ifndef MA_FUZZ_MEMREAD_H
#define MA_FUZZ_MEMREAD_H

#include <stddef.h>
#include <stdint.h>

#include "memread.h"

/* Reads of [base, base + len) are served from buf; every other fails */
void fuzz_mem_set(uint64_t base, const uint8_t *buf, size_t len);

#endif
