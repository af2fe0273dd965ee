/* SPDX-License-Identifier: MIT */
/*
 * The report formats, one row each: everything `memattach report` knows
 * of a format (its name, its file extension, whether it may go to a
 * terminal, whether its output shows a truncation warning itself, how to
 * render it and its --diff).  To add a format: its file
 * (report_<name>.c, with its renderer declared in report.h) and its row.
 */
#include <stdio.h>
#include <string.h>

#include "report.h"

const struct ma_report_format ma_report_formats[] = {
	{
		.name = "text",
		.ext = ".txt",
		.terminal = true,
		.shows_warning = true,
		.render = ma_report_text,
		.diff = ma_report_diff_text,
	},
	{
		.name = "html",
		.ext = ".html",
		.by_thread = true,
		.timeline = true,
		.render = ma_report_html,
	},
	{
		.name = "pprof",
		.one_view = true,
		.ext = ".pb.gz",
		.by_thread = true,
		.render = ma_report_pprof,
	},
	{
		.name = "speedscope",
		.one_view = true,
		.ext = ".speedscope.json",
		.by_thread = true,
		.render = ma_report_speedscope,
	},
	{
		.name = "collapsed",
		.one_view = true,
		.ext = ".folded",
		.terminal = true,
		.render = ma_report_collapsed,
		.diff = ma_report_diff_collapsed,
	},
	{
		.name = "csv",
		.ext = ".csv",
		.terminal = true,
		.render = ma_report_csv,
		.diff = ma_report_diff_csv,
	},
	{
		.name = "json",
		.ext = ".json",
		.by_thread = true,
		.terminal = true,
		.render = ma_report_json,
		.diff = ma_report_diff_json,
	},
	{
		.name = "stats",
		.ext = ".stats.txt",
		.terminal = true,
		.shows_warning = true,
		.render = ma_report_stats,
	},
	{ 0 },
};

const struct ma_report_format *ma_report_format_find(const char *s)
{
	for (const struct ma_report_format *f = ma_report_formats; f->name; f++)
		if (!strcmp(s, f->name))
			return f;
	return NULL;
}

void ma_report_format_names(char *buf, size_t len,
			    bool (*keep)(const struct ma_report_format *),
			    const char *last)
{
	size_t n = 0, k = 0, used;

	for (const struct ma_report_format *r = ma_report_formats; r->name; r++)
		n += !keep || keep(r);
	for (const struct ma_report_format *r = ma_report_formats; r->name;
	     r++) {
		if (keep && !keep(r))
			continue;
		used = strlen(buf);
		snprintf(buf + used, len - used, "%s%s",
			 !k	      ? ""
			 : k + 1 == n ? last
				      : ", ",
			 r->name);
		k++;
	}
}
