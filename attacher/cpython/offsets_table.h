/* SPDX-License-Identifier: MIT */
/*
 * The built-in offsets table, one entry per CPython minor version, generated
 * from DWARF by tools/gen-offsets-table into attacher/offsets_table.c.  Use
 * ma_pyoffsets_from_table() (pyoffsets.h) rather than this directly.
 */
#ifndef MA_OFFSETS_TABLE_H
#define MA_OFFSETS_TABLE_H

#include <stddef.h>

#include "ma_offsets.h"

extern const struct ma_py_offsets ma_offsets_table[];
extern const size_t ma_offsets_table_len;

#endif
