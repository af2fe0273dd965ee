/* SPDX-License-Identifier: MIT */
/*
 * struct ma_py_offsets as a whole, whatever its source: a blank set, source
 * names, printing and comparing (through the field list of
 * common/ma_offsets.h), and lookups in the built-in table
 * (offsets_table.c, generated).  The sources: offsets_dwarf.c,
 * offsets_debugoffsets.c; the chain that picks one: offsets_source.c.
 */
#include "pyoffsets.h"

#include <errno.h>
#include <string.h>

#include "ma_pyver.h"
#include "errors.h"
#include "offsets_internal.h"
#include "offsets_table.h"

/* Every field MA_OFF_NONE, header set: the starting point of each source, so
 * that a field nobody fills can never read as offset 0. */
void ma_pyoffsets_init(struct ma_py_offsets *o, uint32_t version_hex,
		       enum ma_offsets_source src)
{
	memset(o, 0, sizeof(*o));
	o->abi = MA_OFFSETS_ABI;
	o->version_hex = version_hex;
	o->source = src;
	for (int i = 0; i < MA_FI_COUNT; i++)
		ma_py_field_set(o, i, MA_OFF_NONE);
}

const char *ma_offsets_source_name(enum ma_offsets_source s)
{
	switch (s) {
	case MA_OFFSETS_SRC_DWARF:
		return "dwarf";
	case MA_OFFSETS_SRC_DEBUG_OFFSETS:
		return "debug-offsets";
	case MA_OFFSETS_SRC_TABLE:
		return "table";
	case MA_OFFSETS_SRC_NONE:
		break;
	}
	return "none";
}

static void print_version(FILE *f, uint32_t hex)
{
	fprintf(f, "%d.%d.%d", ma_py_major(hex), ma_py_minor(hex),
		(int)((hex >> 8) & 0xff));
}

void ma_pyoffsets_print(FILE *f, const struct ma_py_offsets *o)
{
	fprintf(f, "%-28s ", "version");
	print_version(f, o->version_hex);
	fprintf(f, " (0x%08x)\n", o->version_hex);
	fprintf(f, "%-28s %s\n", "source",
		ma_offsets_source_name((enum ma_offsets_source)o->source));
	for (int i = 0; i < MA_FI_COUNT; i++) {
		int v = ma_py_field_get(o, i);

		if (v == MA_OFF_NONE)
			fprintf(f, "%-28s -\n", ma_py_fields[i].name);
		else
			fprintf(f, "%-28s %d\n", ma_py_fields[i].name, v);
	}
}

/* The source is left out on purpose: the table generator pastes this output
 * into offsets_table.c, and a table entry's source is always "table". */
void ma_pyoffsets_print_c(FILE *f, const struct ma_py_offsets *o)
{
	fprintf(f, "{\n\t/* ");
	print_version(f, o->version_hex);
	fprintf(f, ", from %s */\n",
		ma_offsets_source_name((enum ma_offsets_source)o->source));
	fprintf(f, "\t.abi = MA_OFFSETS_ABI,\n");
	fprintf(f, "\t.version_hex = 0x%08x,\n", o->version_hex);
	for (int i = 0; i < MA_FI_COUNT; i++) {
		int v = ma_py_field_get(o, i);

		if (v == MA_OFF_NONE)
			fprintf(f, "\t.%s = MA_OFF_NONE,\n",
				ma_py_fields[i].name);
		else
			fprintf(f, "\t.%s = %d,\n", ma_py_fields[i].name, v);
	}
	fprintf(f, "},\n");
}

int ma_pyoffsets_diff(FILE *f, const struct ma_py_offsets *a,
		      const struct ma_py_offsets *b)
{
	int n = 0;

	if (a->abi != b->abi) {
		n++;
		if (f)
			fprintf(f, "%-28s %u != %u\n", "abi", a->abi, b->abi);
	}
	/* Same minor is what matters: one table entry serves every micro
	 * release (which is exactly the assumption --check verifies). */
	if ((a->version_hex >> 16) != (b->version_hex >> 16)) {
		n++;
		if (f) {
			fprintf(f, "%-28s ", "version");
			print_version(f, a->version_hex);
			fprintf(f, " != ");
			print_version(f, b->version_hex);
			fprintf(f, "\n");
		}
	}
	for (int i = 0; i < MA_FI_COUNT; i++) {
		int va = ma_py_field_get(a, i);
		int vb = ma_py_field_get(b, i);

		if (va == vb)
			continue;
		n++;
		if (f)
			fprintf(f, "%-28s %d != %d\n", ma_py_fields[i].name, va,
				vb);
	}
	return n;
}

/* ---------------------------------------------------------------------- */
/* The built-in table                                                      */

int ma_pyoffsets_from_table(uint32_t version_hex, struct ma_py_offsets *out)
{
	for (size_t i = 0; i < ma_offsets_table_len; i++) {
		const struct ma_py_offsets *e = &ma_offsets_table[i];

		if ((e->version_hex >> 16) != (version_hex >> 16))
			continue;
		*out = *e;
		out->source = MA_OFFSETS_SRC_TABLE;
		/* The entry was generated from one micro release and is
		 * assumed to hold for all of them: report the version it is
		 * being used for. */
		out->version_hex = version_hex;
		return 0;
	}
	return ma_err(-ENOENT,
		      "no built-in offsets for Python %d.%d (the table has "
		      "3.%d to 3.%d)",
		      ma_py_major(version_hex), ma_py_minor(version_hex),
		      MA_PY_MIN_MINOR, MA_PY_MAX_MINOR);
}

const struct ma_py_offsets *ma_pyoffsets_table_entry(uint32_t version_hex)
{
	for (size_t i = 0; i < ma_offsets_table_len; i++)
		if ((ma_offsets_table[i].version_hex >> 16) ==
		    (version_hex >> 16))
			return &ma_offsets_table[i];
	return NULL;
}
