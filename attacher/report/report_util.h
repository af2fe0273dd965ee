/* SPDX-License-Identifier: MIT */
/*
 * Helpers the report formats share (report_util.c): what more than one
 * format writes.  A format takes them from here, never from another
 * format's file.
 */
#ifndef MA_REPORT_UTIL_H
#define MA_REPORT_UTIL_H

#include <stdint.h>
#include <stdio.h>

#include "report.h"

/* A JSON string's body (no quotes), ASCII only, with '<', '>' and '&'
 * escaped too, so that it can sit inside an HTML <script> element */
void ma_json_str(FILE *f, const char *s);

/* A CSV field, quoted when needed (RFC 4180) */
void ma_csv_field(FILE *f, const char *s);

/* The frames of tree node n, outermost first, joined by ';' (collapsed
 * stacks; --diff matches stacks by it) */
void ma_collapsed_stack(const struct ma_report *r, FILE *f, uint32_t n);

/* Strings numbered by pointer (the accounting interns names, so equal
 * pointers are equal strings): pprof's string table, the HTML's */
struct ma_strtab {
	const char **s;
	size_t n, cap;
	struct ma_strtab_slot {
		const char *p;
		int64_t idx;
	} * h;
	size_t hcap;
};
int64_t ma_strtab_idx(struct ma_strtab *t, const char *s); /* <0 ENOMEM */
void ma_strtab_free(struct ma_strtab *t);

#endif
