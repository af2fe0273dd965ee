/* SPDX-License-Identifier: MIT */
/*
 * Text fitted to a terminal's width, shared by the attach summary
 * (account.c) and the text reports (report_text.c): the width to use, a
 * "function (file:line)" location cut to fit, and lines made of pieces
 * that wrap where a piece would cross the width.
 */
#ifndef MA_TEXTFIT_H
#define MA_TEXTFIT_H

#include <stdio.h>

/* The terminal's columns when f is one, else $COLUMNS, else 100 */
int ma_term_width(FILE *f);

/*
 * "function (file:line)" in at most width columns (buf holds width + 1):
 * a long file is cut on the left (its end tells files apart), then a long
 * function on the right.  fn NULL: the file alone (rows grouped by file);
 * file "": the function alone; line < 0: no line.
 */
void ma_fit_location(const char *fn, const char *file, int line, char *buf,
		     int width);

/*
 * A line made of pieces: a piece that would cross the width starts a new
 * line indented by indent + 2, the punctuation of its separator ending the
 * previous one; a piece longer than a line is cut.  col counts what the
 * caller printed itself on the current line (colour codes take none).
 */
struct ma_para {
	FILE *f;
	int width;
	int col, indent;
};

void ma_para_piece(struct ma_para *p, const char *sep, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* End the current line */
void ma_para_end(struct ma_para *p);

/*
 * s with its control characters written out for a one-line message: \n,
 * \r, \t, others as \xNN (C0, DEL) or \u00NN (C1 in UTF-8).  A target's
 * command line is the target's to choose: raw, a newline breaks the line it
 * is printed on and an escape sequence reaches the terminal.  Other bytes,
 * backslashes and UTF-8 included, are kept.  malloc'd; NULL when out of
 * memory.
 */
char *ma_escape_ctl(const char *s);

/*
 * A name read from the target (a function, a file, a thread), made safe to
 * print: every control character (C0, DEL, and C1 in UTF-8: U+0080 to
 * U+009F, which some terminals take for CSI) becomes '?', so that a
 * program cannot drive the user's terminal through memattach's output
 * ("\e[2J", an OSC title).  In place, len bytes; the length is kept.
 */
void ma_ctl_sanitize(char *s, size_t len);

/* A path or name to print (an executable's path, a module's): a copy in
 * buf, cut to len, made safe with ma_ctl_sanitize; the original stays
 * whole for opening the file.  Returns buf. */
const char *ma_ctl_safe(const char *s, char *buf, size_t len);

#endif
