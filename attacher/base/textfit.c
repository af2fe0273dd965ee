/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "textfit.h"

int ma_term_width(FILE *f)
{
	struct winsize ws;
	const char *cols;

	if (isatty(fileno(f)) && ioctl(fileno(f), TIOCGWINSZ, &ws) == 0 &&
	    ws.ws_col > 0)
		return ws.ws_col;
	cols = getenv("COLUMNS");
	if (cols && atoi(cols) > 0)
		return atoi(cols);
	return 100;
}

void ma_fit_location(const char *fn, const char *file, int line, char *buf,
		     int width)
{
	char ln[16] = "";
	int fl, fnl, avail;

	if (width < 8)
		width = 8;
	if (!fn) { /* grouped by file */
		fl = (int)strlen(file);
		if (fl <= width)
			snprintf(buf, (size_t)width + 1, "%s", file);
		else
			snprintf(buf, (size_t)width + 1, "...%s",
				 file + fl - (width - 3));
		return;
	}
	if (!file[0]) {
		snprintf(buf, (size_t)width + 1, "%s", fn);
		return;
	}
	if (line >= 0)
		snprintf(ln, sizeof(ln), ":%d", line);
	fl = (int)strlen(file);
	fnl = (int)strlen(fn);
	avail = width - 3 - (int)strlen(ln); /* " (" and ")" */
	if (fnl + fl <= avail) {
		snprintf(buf, (size_t)width + 1, "%s (%s%s)", fn, file, ln);
		return;
	}
	/* The function whole if it leaves 16 columns for the file's end
	 * ("..." and its last characters), else cut too */
	{
		int ftail = avail - fnl, fcut = fnl;

		if (ftail < 16) {
			ftail = 16;
			fcut = avail - 16 - 3;
			if (fcut < 1)
				fcut = 1;
		}
		if (ftail >= fl)
			ftail = fl;
		snprintf(buf, (size_t)width + 1, "%.*s%s (%s%s%s)", fcut, fn,
			 fcut < fnl ? "..." : "", ftail < fl ? "..." : "",
			 file + fl - (ftail < fl ? ftail - 3 : fl), ln);
	}
}

void ma_para_piece(struct ma_para *p, const char *sep, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n >= (int)sizeof(buf))
		n = (int)sizeof(buf) - 1;
	if (p->col > p->indent && p->col + (int)strlen(sep) + n > p->width) {
		/* the separator's punctuation ends the line */
		fprintf(p->f, "%.*s\n%*s", (int)strcspn(sep, " "), sep,
			p->indent + 2, "");
		p->col = p->indent + 2;
	} else if (p->col) {
		fputs(sep, p->f);
		p->col += (int)strlen(sep);
	}
	/* a piece longer than the line is cut */
	if (p->col + n > p->width) {
		int keep = p->width - p->col - 3;

		if (keep < 0)
			keep = 0;
		fprintf(p->f, "%.*s...", keep, buf);
		p->col = p->width;
		return;
	}
	fputs(buf, p->f);
	p->col += n;
}

void ma_para_end(struct ma_para *p)
{
	fputc('\n', p->f);
	p->col = 0;
}

char *ma_escape_ctl(const char *s)
{
	/* at most 6 bytes out for 2 in (a C1 character), 4 for 1 */
	size_t n = strlen(s);
	char *out = malloc(4 * n + 1), *o = out;
	const unsigned char *c = (const unsigned char *)s;

	if (!out)
		return NULL;
	for (; *c; c++) {
		if (*c == '\n' || *c == '\r' || *c == '\t') {
			*o++ = '\\';
			*o++ = *c == '\n' ? 'n' : *c == '\r' ? 'r' : 't';
		} else if (*c < 0x20 || *c == 0x7f) {
			o += sprintf(o, "\\x%02x", *c);
		} else if (*c == 0xc2 && c[1] >= 0x80 && c[1] <= 0x9f) {
			o += sprintf(o, "\\u00%02x", c[1]);
			c++;
		} else {
			*o++ = (char)*c;
		}
	}
	*o = '\0';
	return out;
}

void ma_ctl_sanitize(char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f) {
			s[i] = '?';
		} else if (c == 0xc2 && i + 1 < len &&
			   (unsigned char)s[i + 1] >= 0x80 &&
			   (unsigned char)s[i + 1] < 0xa0) {
			s[i] = '?';
			s[++i] = '?';
		}
	}
}

const char *ma_ctl_safe(const char *s, char *buf, size_t len)
{
	if (!len)
		return "";
	snprintf(buf, len, "%s", s ? s : "");
	ma_ctl_sanitize(buf, strlen(buf));
	return buf;
}
