/* SPDX-License-Identifier: MIT */
/*
 * Mapping a bytecode offset to a source line, for each of CPython's line
 * table formats:
 *   - co_lnotab (3.8, 3.9): pairs (byte offset delta, line delta as int8);
 *   - co_linetable (3.10): pairs (byte offset delta, line delta; -128 = none);
 *   - co_linetable location table (3.11+): varint-coded entries with codes
 *     for "no location", "one line", "long form" and "short forms".
 * Pure functions over bytes, so they are shared with the payload later and
 * unit-tested against what each real interpreter reports.
 */
#ifndef MA_LINETABLE_H
#define MA_LINETABLE_H

#include <stddef.h>
#include <stdint.h>

/*
 * Line of the instruction at byte offset `addr` (offset into co_code, in
 * bytes; for 3.10+ that is 2 * instruction index).  `version_hex` selects the
 * format.  Returns the line, or firstlineno when the table has no entry for
 * addr, or -1 when the instruction has no line (3.10+ "no line" entries).
 */
int ma_linetable_addr2line(uint32_t version_hex, const uint8_t *table,
			   size_t len, int firstlineno, int addr);

#endif
