/* SPDX-License-Identifier: MIT */
/*
 * Bytecode offset -> source line, in each line table format of the
 * versions in common/ma_pyver.h (a version's row names its format).
 *
 * The tables come from a target's memory, so they may be truncated or
 * garbage: every decoder stops at `len` and never trusts a length byte to
 * stay inside the buffer.  Nothing here allocates or calls libc beyond
 * arithmetic, so the payload can use the same file.
 */
#include "linetable.h"

/* Line arithmetic on untrusted tables: wrap instead of overflowing (signed
 * overflow is undefined); a garbage table gives a garbage line, not UB. */
static inline int add_wrap(int a, int b)
{
	return (int)((unsigned int)a + (unsigned int)b);
}

#include "ma_pyver.h"

/*
 * 3.8/3.9 co_lnotab: pairs (unsigned byte offset increment, signed line
 * increment).  The line of an offset is the line in force after the last
 * pair whose cumulated offset is <= the offset (what PyCode_Addr2Line does
 * and what dis.findlinestarts implies).  Every offset has a line.
 */
static int lnotab_addr2line(const uint8_t *t, size_t len, int firstlineno,
			    int addr)
{
	int line = firstlineno;
	int a = 0;

	for (size_t i = 0; i + 1 < len; i += 2) {
		a += t[i];
		if (a > addr)
			break;
		line = add_wrap(line, (int8_t)t[i + 1]);
	}
	return line;
}

/*
 * 3.10 co_linetable: pairs (unsigned byte length of the range, signed line
 * delta); a delta of -128 means "this range has no line" and leaves the
 * running line unchanged.  Zero-length ranges only carry line deltas.
 */
static int linetable310_addr2line(const uint8_t *t, size_t len, int firstlineno,
				  int addr)
{
	int line = firstlineno;
	int start = 0;

	for (size_t i = 0; i + 1 < len; i += 2) {
		int end = start + t[i];
		int8_t ld = (int8_t)t[i + 1];
		int this_line = -1;

		if (ld != -128) {
			line = add_wrap(line, ld);
			this_line = line;
		}
		if (addr < end)
			return this_line;
		start = end;
	}
	return firstlineno;
}

/*
 * 3.11+ location table helpers.  After the entry's first byte (bit 7 set),
 * the payload bytes have bit 7 clear; varints are little-endian groups of
 * 6 bits with bit 6 as "more follows".  A byte with bit 7 set ends a varint
 * early (corrupt table): we stop there rather than eat the next entry.
 */
static unsigned int read_varint(const uint8_t *t, size_t len, size_t *pos)
{
	unsigned int val = 0;
	unsigned int shift = 0;

	while (*pos < len && !(t[*pos] & 0x80)) {
		uint8_t b = t[(*pos)++];

		if (shift < 32)
			val |= (unsigned int)(b & 63) << shift;
		shift += 6;
		if (!(b & 64))
			break;
	}
	return val;
}

/* Signed varint: the low bit of the unsigned value is the sign */
static int read_svarint(const uint8_t *t, size_t len, size_t *pos)
{
	unsigned int u = read_varint(t, len, pos);

	return (u & 1) ? -(int)(u >> 1) : (int)(u >> 1);
}

/* Skip the payload bytes of an entry (everything until the next bit 7) */
static void skip_payload(const uint8_t *t, size_t len, size_t *pos)
{
	while (*pos < len && !(t[*pos] & 0x80))
		(*pos)++;
}

enum {
	LOC_SHORT_MAX = 9,  /* 0-9: short forms, same line as before */
	LOC_ONE_LINE0 = 10, /* 10-12: one-line forms, line delta 0/1/2 */
	LOC_ONE_LINE2 = 12,
	LOC_NO_COLUMNS = 13, /* svarint line delta */
	LOC_LONG = 14,	     /* svarint line delta, then end line, columns */
	LOC_NONE = 15,	     /* no location at all */
};

/*
 * Each entry covers (bits 0-2) + 1 code units, i.e. 2 bytes each.  The
 * running line changes by the entry's line delta; a "no location" entry
 * gives -1 and leaves the running line as it was.
 */
static int loctable_addr2line(const uint8_t *t, size_t len, int firstlineno,
			      int addr)
{
	int unit = addr / 2;
	int line = firstlineno;
	int start = 0;
	size_t pos = 0;

	while (pos < len) {
		uint8_t first = t[pos++];
		int code = (first >> 3) & 15;
		int this_line;

		if (!(first & 0x80)) {
			/* Not at an entry start: corrupt, resynchronise */
			skip_payload(t, len, &pos);
			continue;
		}
		if (code == LOC_NONE) {
			this_line = -1;
		} else if (code == LOC_LONG || code == LOC_NO_COLUMNS) {
			line = add_wrap(line, read_svarint(t, len, &pos));
			this_line = line;
		} else if (code >= LOC_ONE_LINE0 && code <= LOC_ONE_LINE2) {
			line = add_wrap(line, code - LOC_ONE_LINE0);
			this_line = line;
		} else {
			this_line = line;
		}
		/* Columns and end lines are not needed for a line number */
		skip_payload(t, len, &pos);

		int end = start + (first & 7) + 1;

		if (unit < end)
			return this_line;
		start = end;
	}
	return firstlineno;
}

int ma_linetable_addr2line(uint32_t version_hex, const uint8_t *table,
			   size_t len, int firstlineno, int addr)
{
	/* CPython answers firstlineno for "not started yet" (f_lasti -1) */
	if (addr < 0 || !table)
		return firstlineno;
	switch (ma_pyver_nearest(version_hex)->linetable) {
	case MA_LT_LNOTAB:
		return lnotab_addr2line(table, len, firstlineno, addr);
	case MA_LT_LINES310:
		return linetable310_addr2line(table, len, firstlineno, addr);
	default:
		return loctable_addr2line(table, len, firstlineno, addr);
	}
}
