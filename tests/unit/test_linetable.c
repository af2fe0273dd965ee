/* SPDX-License-Identifier: MIT */
/*
 * ma_linetable_addr2line against what each real interpreter reports for its
 * own code objects (tests/unit/linetable_vectors.py), plus hand-made tables
 * for the corner cases no compiler emits (truncated or corrupt tables).
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "linetable.h"

#define PY(minor) (0x03000000u | ((uint32_t)(minor) << 16) | 0xf0u)

static void pyenv_root(char *buf, size_t len)
{
	FILE *p = popen("pyenv root 2>/dev/null", "r");

	buf[0] = '\0';
	if (p) {
		if (fgets(buf, (int)len, p))
			buf[strcspn(buf, "\n")] = '\0';
		pclose(p);
	}
	if (!buf[0])
		snprintf(buf, len, "/root/.pyenv");
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* "-" is an empty table */
static size_t unhex(const char *s, uint8_t *out)
{
	size_t n = 0;

	if (strcmp(s, "-") == 0)
		return 0;
	for (; s[0] && s[1]; s += 2) {
		int hi = hexval(s[0]), lo = hexval(s[1]);

		cr_assert(hi >= 0 && lo >= 0, "bad hex in vectors: %.8s", s);
		out[n++] = (uint8_t)(hi << 4 | lo);
	}
	return n;
}

struct counts {
	long code_objects;
	long checked;
	long no_line;
	long mismatches;
};

/*
 * One "C firstlineno tablehex lines name" record: check every offset, and
 * report the first few mismatches in full so that a failure is debuggable.
 */
static void check_record(uint32_t ver, char *rec, struct counts *c)
{
	char *save = NULL;
	char *first = strtok_r(rec, " ", &save);
	char *hex = strtok_r(NULL, " ", &save);
	char *lines = strtok_r(NULL, " ", &save);
	char *name = strtok_r(NULL, " \n", &save);

	cr_assert(first && hex && lines && name, "short vector record");
	uint8_t *table = malloc(strlen(hex) / 2 + 1);

	cr_assert(table);
	size_t len = unhex(hex, table);
	int firstlineno = atoi(first);
	int addr = 0;

	c->code_objects++;
	if (strcmp(lines, "-") != 0) {
		char *s2 = NULL;

		for (char *tok = strtok_r(lines, ",", &s2); tok;
		     tok = strtok_r(NULL, ",", &s2), addr += 2) {
			if (strcmp(tok, "x") == 0)
				continue;
			int want = atoi(tok);
			int got = ma_linetable_addr2line(ver, table, len,
							 firstlineno, addr);

			c->checked++;
			if (want == -1)
				c->no_line++;
			if (got != want && c->mismatches++ < 5)
				cr_log_error("%x %s (first line %d): offset %d:"
					     " got %d, want %d",
					     ver, name, firstlineno, addr, got,
					     want);
		}
	}
	free(table);
}

static void check_interpreter(const char *python)
{
	char cmd[1024];
	char *line = NULL;
	size_t cap = 0;
	uint32_t ver = 0;
	struct counts c = { 0 };

	if (access(python, X_OK) != 0) {
		cr_skip_test("%s not present: %s", python, strerror(errno));
		return;
	}
	snprintf(cmd, sizeof(cmd), "%s -I %s/tests/unit/linetable_vectors.py",
		 python, MA_SOURCE_DIR);
	FILE *p = popen(cmd, "r");

	cr_assert(p, "popen %s", cmd);
	while (getline(&line, &cap, p) > 0) {
		if (line[0] == 'V')
			ver = (uint32_t)strtoul(line + 2, NULL, 16);
		else if (line[0] == 'C' && line[1] == ' ')
			check_record(ver, line + 2, &c);
	}
	free(line);
	int st = pclose(p);

	cr_assert_eq(st, 0, "%s exited with status %d", cmd, st);
	cr_assert_eq(ver >> 24, 3, "no version line from %s", python);
	cr_log_info("%s (%x): %ld code objects, %ld offsets (%ld without line)",
		    python, ver, c.code_objects, c.checked, c.no_line);
	/* The sources include >1000 functions: a short run means the
	 * script broke, not that everything matched. */
	cr_assert_gt(c.code_objects, 300, "%s: only %ld code objects", python,
		     c.code_objects);
	cr_assert_eq(c.mismatches, 0, "%s: %ld offsets with the wrong line",
		     python, c.mismatches);
}

Test(linetable, debian_python3)
{
	check_interpreter("/usr/bin/python3");
}

#define PYENV_TEST(tag, ver)                                                   \
	Test(linetable, pyenv_##tag)                                           \
	{                                                                      \
		char root[512], path[1024];                                    \
                                                                               \
		pyenv_root(root, sizeof(root));                                \
		snprintf(path, sizeof(path), "%s/versions/%s/bin/python3",     \
			 root, ver);                                           \
		check_interpreter(path);                                       \
	}

PYENV_TEST(3_8, "3.8.18")
PYENV_TEST(3_9, "3.9.18")
PYENV_TEST(3_10, "3.10.13")
PYENV_TEST(3_11, "3.11.7")
PYENV_TEST(3_12, "3.12.1")
PYENV_TEST(3_13, "3.13.0")

/* Hand-made tables: what no compiler emits but a garbage read can give */

Test(linetable, negative_addr_is_firstlineno)
{
	static const uint8_t t[] = { 2, 1 };

	for (int m = 8; m <= 13; m++)
		cr_assert_eq(ma_linetable_addr2line(PY(m), t, sizeof(t), 7, -1),
			     7);
}

Test(linetable, empty_and_null_tables)
{
	for (int m = 8; m <= 13; m++) {
		cr_assert_eq(ma_linetable_addr2line(PY(m), NULL, 0, 5, 4), 5);
		cr_assert_eq(ma_linetable_addr2line(PY(m), (const uint8_t *)"",
						    0, 5, 0),
			     5);
	}
}

Test(linetable, lnotab_signed_deltas)
{
	/* 3.8: line +3 at 4, then -2 at 10 (negative deltas are legal) */
	static const uint8_t t[] = { 4, 3, 6, 0xfe };

	cr_assert_eq(ma_linetable_addr2line(PY(8), t, sizeof(t), 10, 0), 10);
	cr_assert_eq(ma_linetable_addr2line(PY(8), t, sizeof(t), 10, 4), 13);
	cr_assert_eq(ma_linetable_addr2line(PY(8), t, sizeof(t), 10, 9), 13);
	cr_assert_eq(ma_linetable_addr2line(PY(8), t, sizeof(t), 10, 10), 11);
	cr_assert_eq(ma_linetable_addr2line(PY(8), t, sizeof(t), 10, 500), 11);
}

Test(linetable, linetable310_no_line_and_past_end)
{
	/* [0,4) line+1, [4,6) no line, [6,8) line+1 from the running line */
	static const uint8_t t[] = { 4, 1, 2, 0x80, 2, 1 };

	cr_assert_eq(ma_linetable_addr2line(PY(10), t, sizeof(t), 1, 2), 2);
	cr_assert_eq(ma_linetable_addr2line(PY(10), t, sizeof(t), 1, 4), -1);
	cr_assert_eq(ma_linetable_addr2line(PY(10), t, sizeof(t), 1, 6), 3);
	/* past the table: firstlineno, as documented */
	cr_assert_eq(ma_linetable_addr2line(PY(10), t, sizeof(t), 1, 8), 1);
	/* odd length: the dangling byte is ignored */
	cr_assert_eq(ma_linetable_addr2line(PY(10), t, 5, 1, 6), 1);
}

Test(linetable, loctable_forms)
{
	static const uint8_t t[] = {
		0x80 | 13 << 3 | 0,
		2 << 1,		    /* no-column, line +2, 1 unit */
		0x80 | 15 << 3 | 1, /* no location, 2 units */
		0x80 | 11 << 3 | 0,
		4,
		5, /* one-line +1 */
		0x80 | 14 << 3 | 0,
		0x40 | 1,
		1, /* long: line -32 - 0 */
		0,
		3,
		4, /* end line delta, columns */
		0x80 | 3 << 3 | 2,
		7, /* short form, same line, 3 units */
	};
	const size_t n = sizeof(t);

	cr_assert_eq(ma_linetable_addr2line(PY(11), t, n, 100, 0), 102);
	cr_assert_eq(ma_linetable_addr2line(PY(11), t, n, 100, 2), -1);
	cr_assert_eq(ma_linetable_addr2line(PY(11), t, n, 100, 4), -1);
	cr_assert_eq(ma_linetable_addr2line(PY(11), t, n, 100, 6), 103);
	/* svarint 0x41,0x01: 1 | 1 << 6 = 65 -> odd -> -(65 >> 1) = -32 */
	cr_assert_eq(ma_linetable_addr2line(PY(11), t, n, 100, 8), 71);
	cr_assert_eq(ma_linetable_addr2line(PY(12), t, n, 100, 10), 71);
	cr_assert_eq(ma_linetable_addr2line(PY(13), t, n, 100, 14), 71);
	cr_assert_eq(ma_linetable_addr2line(PY(13), t, n, 100, 16), 100);
}

Test(linetable, loctable_truncated_and_garbage)
{
	/* long form cut in the middle of its varint */
	static const uint8_t cut[] = { 0x80 | 14 << 3 | 0, 0x40 | 4 };
	/* leading garbage bytes without bit 7, then a one-line +2 entry */
	static const uint8_t junk[] = { 0x12, 0x34, 0x80 | 12 << 3 | 0, 1, 2 };
	uint8_t rnd[4096];

	cr_assert_eq(ma_linetable_addr2line(PY(11), cut, sizeof(cut), 9, 0),
		     11);
	cr_assert_eq(ma_linetable_addr2line(PY(11), junk, sizeof(junk), 9, 0),
		     11);
	/* random bytes: must terminate and never read outside the table */
	srand(1);
	for (int round = 0; round < 200; round++) {
		for (size_t i = 0; i < sizeof(rnd); i++)
			rnd[i] = (uint8_t)rand();
		for (int m = 8; m <= 13; m++)
			(void)ma_linetable_addr2line(PY(m), rnd, sizeof(rnd), 1,
						     rand() % 20000);
	}
}
