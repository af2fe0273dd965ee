/* SPDX-License-Identifier: MIT */
/*
 * Bytes and counts in human units, the one rule every output uses (the
 * attach progress line and summary, info, the text reports): below 1024
 * bytes (1000 for counts) the exact number; above, three significant
 * digits: "1.23 GiB", "12.3 MiB", "123 KiB"; counts in k, M, G...
 */
#ifndef MA_UNITS_H
#define MA_UNITS_H

#include <stddef.h>
#include <stdint.h>

/* "1.20 GiB", "310 MiB", "512 B" (binary units) */
void ma_fmt_bytes(uint64_t n, char *buf, size_t len);
/* "12.4 M", "2.10 k", "812" (decimal units) */
void ma_fmt_count(uint64_t n, char *buf, size_t len);

#endif
