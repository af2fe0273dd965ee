/* SPDX-License-Identifier: MIT */
/*
 * What the report formats write with, in one place (report_util.h): JSON
 * strings, CSV fields, collapsed stacks, a table of strings numbered by
 * pointer.  A format takes these from here, never from another format.
 */
#include <stdlib.h>
#include <string.h>

#include "report_util.h"

/*
 * A JSON string's body, ASCII only, and with '<', '>' and '&' escaped too,
 * so that the text can sit inside an HTML <script> element as it is.
 */
void ma_json_str(FILE *f, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;

	for (; *p; p++) {
		unsigned c = *p;

		if (c == '"' || c == '\\') {
			putc('\\', f);
			putc((int)c, f);
		} else if (c >= 0x20 && c < 0x7f && c != '<' && c != '>' &&
			   c != '&') {
			putc((int)c, f);
		} else if (c < 0x80) {
			fprintf(f, "\\u00%c%c", hex[c >> 4], hex[c & 15]);
		} else {
			/* UTF-8 sequence to \u escapes; invalid bytes become
			 * U+FFFD so the output is always valid JSON */
			unsigned cp, need;

			if ((c & 0xe0) == 0xc0) {
				cp = c & 0x1f;
				need = 1;
			} else if ((c & 0xf0) == 0xe0) {
				cp = c & 0x0f;
				need = 2;
			} else if ((c & 0xf8) == 0xf0) {
				cp = c & 0x07;
				need = 3;
			} else {
				fputs("\\ufffd", f);
				continue;
			}
			for (unsigned i = 1; i <= need; i++) {
				if ((p[i] & 0xc0) != 0x80) {
					need = 0;
					break;
				}
				cp = cp << 6 | (p[i] & 0x3f);
			}
			if (!need || cp > 0x10ffff) {
				fputs("\\ufffd", f);
				continue;
			}
			p += need;
			if (cp >= 0x10000) {
				cp -= 0x10000;
				fprintf(f, "\\u%04x\\u%04x",
					0xd800 + (cp >> 10),
					0xdc00 + (cp & 0x3ff));
			} else {
				fprintf(f, "\\u%04x", cp);
			}
		}
	}
}

void ma_csv_field(FILE *f, const char *s)
{
	if (!strpbrk(s, ",\"\r\n")) {
		fputs(s, f);
		return;
	}
	putc('"', f);
	for (; *s; s++) {
		if (*s == '"')
			putc('"', f);
		putc(*s, f);
	}
	putc('"', f);
}

/* Write the frames of node n, outermost first, joined by ';' */
void ma_collapsed_stack(const struct ma_report *r, FILE *f, uint32_t n)
{
	uint32_t st[MA_REPORT_MAX_DEPTH];
	int d = ma_report_stack(r, n, st, MA_REPORT_MAX_DEPTH);
	char name[1024];

	if (d > MA_REPORT_MAX_DEPTH)
		d = MA_REPORT_MAX_DEPTH;
	for (int i = d - 1; i >= 0; i--) {
		ma_report_frame_name(&r->nodes[st[i]], name, sizeof(name));
		fputs(name, f);
		if (i)
			putc(';', f);
	}
}

int64_t ma_strtab_idx(struct ma_strtab *t, const char *s)
{
	size_t j;

	if ((t->n + 1) * 2 > t->hcap) {
		size_t cap = t->hcap ? t->hcap * 2 : 1024;
		struct ma_strtab_slot *h = calloc(cap, sizeof(*h));

		if (!h)
			return -1;
		for (size_t i = 0; i < t->hcap; i++) {
			if (!t->h[i].p)
				continue;
			for (j = ((uintptr_t)t->h[i].p >> 3) *
					 0x9e3779b97f4a7c15ull &
				 (cap - 1);
			     h[j].p; j = (j + 1) & (cap - 1))
				;
			h[j] = t->h[i];
		}
		free(t->h);
		t->h = h;
		t->hcap = cap;
	}
	for (j = ((uintptr_t)s >> 3) * 0x9e3779b97f4a7c15ull & (t->hcap - 1);
	     t->h[j].p; j = (j + 1) & (t->hcap - 1))
		if (t->h[j].p == s)
			return t->h[j].idx;
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 256;
		const char **p = realloc(t->s, cap * sizeof(*p));

		if (!p)
			return -1;
		t->s = p;
		t->cap = cap;
	}
	t->s[t->n] = s;
	t->h[j].p = s;
	t->h[j].idx = (int64_t)t->n;
	return (int64_t)t->n++;
}

void ma_strtab_free(struct ma_strtab *t)
{
	free(t->s);
	free(t->h);
	memset(t, 0, sizeof(*t));
}
