/* SPDX-License-Identifier: MIT */
/* The CLI layer shared by the command files (cli.h) */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"

int ma_cli_verbose;

void ma_cli_error(const char *cmd)
{
	const char *msg = ma_errmsg()[0] ? ma_errmsg() : "failed";

	if (cmd && !ma_err_has_context(cmd))
		fprintf(stderr, "memattach: %s: %s\n", cmd, msg);
	else
		fprintf(stderr, "memattach: %s\n", msg);
}

int ma_cli_fail(const char *cmd)
{
	ma_cli_error(cmd);
	return ma_err_exit();
}

void ma_cli_wrap(FILE *f, const char *head, int indent, const char *text)
{
	enum { WIDTH = 75 };
	int col = fprintf(f, "%-*s", indent, head);

	while (*text) {
		int w = (int)strcspn(text, " ");

		if (col > indent && col + 1 + w > WIDTH)
			col = fprintf(f, "\n%*s", indent, "") - 1;
		else if (col > indent)
			col += fprintf(f, " ");
		col += fprintf(f, "%.*s", w, text);
		text += w;
		text += strspn(text, " ");
	}
	putc('\n', f);
}

int ma_cli_offsets_pref(const char *s, enum ma_offsets_pref *out)
{
	static const struct {
		const char *name;
		enum ma_offsets_pref pref;
	} names[] = {
		{ "auto", MA_PREF_AUTO },
		{ "dwarf", MA_PREF_DWARF },
		{ "debug-offsets", MA_PREF_DEBUG_OFFSETS },
		{ "table", MA_PREF_TABLE },
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(s, names[i].name)) {
			*out = names[i].pref;
			return 0;
		}
	ma_err_set_exit(MA_EXIT_USAGE);
	return ma_err(
		-EINVAL,
		"unknown offsets source '%s' (auto, dwarf, debug-offsets, "
		"table)",
		s);
}

int ma_cli_uint(const char *s, unsigned long long min, unsigned long long max,
		unsigned long long *out)
{
	unsigned long long v;
	char *end;

	/* strtoull skips blanks and takes a sign (negating "-1" into
	 * 2^64 - 1): a digit first leaves it only digits to read */
	if (!isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int ma_cli_secs(const char *s, uint64_t *ns)
{
	char *end;
	double v;

	/* a digit (or a point and a digit) first: no blank, sign, "nan" or
	 * "inf"; no 'x': strtod reads "0x10" as hexadecimal */
	if (!(isdigit((unsigned char)s[0]) ||
	      (s[0] == '.' && isdigit((unsigned char)s[1]))) ||
	    strpbrk(s, "xX"))
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || *end || !isfinite(v) || v < 0 || v > 1e9)
		return -EINVAL;
	*ns = (uint64_t)(v * 1e9 + 0.5);
	return 0;
}

/* Stop the option loop with this exit code */
static int opt_end(struct ma_cli_args *a, int code)
{
	a->exit = code;
	return 0;
}

/*
 * A usage error: one line, "memattach: <cmd>: <what> (see 'memattach <cmd>
 * --help')", exit 2.  The hint instead of the whole usage, which buried
 * the one line that said what was wrong (docs/memattach.md: every error
 * is one line).
 */
static int __attribute__((format(printf, 2, 3)))
usage_error(struct ma_cli_args *a, const char *fmt, ...)
{
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	ma_err(-EINVAL, "%s (see 'memattach %s --help')", what, a->cmd);
	ma_err_set_exit(MA_EXIT_USAGE);
	return opt_end(a, ma_cli_fail(a->cmd));
}

/* The long options whose name starts with the n bytes of name: the one
 * named exactly, else the one name it abbreviates (getopt_long's rule);
 * *count says how many it abbreviates */
static const struct option *long_named(const struct option *lo,
				       const char *name, size_t n, int *count)
{
	const struct option *hit = NULL;

	*count = 0;
	for (; lo && lo->name; lo++) {
		if (strncmp(lo->name, name, n))
			continue;
		if (strlen(lo->name) == n) {
			*count = 1;
			return lo;
		}
		hit = lo;
		++*count;
	}
	return *count == 1 ? hit : NULL;
}

/*
 * What getopt_long found wrong, said as the user typed it.  Its own
 * messages ("info: invalid option -- '1'") are off (opterr = 0): they
 * named neither memattach nor the command the usual way.  c is ':' (a
 * value missing) or '?' (an unknown or ambiguous option, or a value given
 * to one that takes none); optopt is the option's short letter or value,
 * 0 for an unknown long one; argv[optind - 1] is the argument that held a
 * long option, or a short one ending its cluster (else optopt says it).
 */
static int opt_error(struct ma_cli_args *a, int c)
{
	const char *arg =
		optind > 0 && optind <= a->argc ? a->argv[optind - 1] : "";
	const struct option *o = NULL;
	int count = 0, lng = 0;
	size_t n = 0;

	if (!strncmp(arg, "--", 2) && arg[2]) {
		n = strcspn(arg + 2, "=");
		o = long_named(a->longopts, arg + 2, n, &count);
		/* '?' with optopt set: a short option, unless this argument
		 * is the long one given a value it does not take */
		lng = c == ':' || !optopt ||
		      (o && o->val == optopt && o->has_arg == no_argument &&
		       arg[2 + n] == '=');
	}
	/* named in full: "--out" is --output */
	if (lng && c == ':')
		return usage_error(a, "option '--%s' needs a value",
				   o ? o->name : "?");
	if (lng && optopt)
		return usage_error(a, "option '--%s' takes no value",
				   o ? o->name : "?");
	if (lng && count > 1) {
		char names[256] = "";
		size_t len = 0;

		for (const struct option *lo = a->longopts; lo->name; lo++)
			if (!strncmp(lo->name, arg + 2, n) &&
			    len < sizeof(names))
				len += (size_t)snprintf(
					names + len, sizeof(names) - len,
					"%s--%s", len ? ", " : "", lo->name);
		return usage_error(a, "option '--%.*s' is ambiguous: %s",
				   (int)n, arg + 2, names);
	}
	if (lng)
		return usage_error(a, "unknown option '--%.*s'", (int)n,
				   arg + 2);
	if (optopt <= 0 || optopt > 127 || !isgraph(optopt))
		return usage_error(a, "unknown option");
	if (c == ':')
		return usage_error(a, "option '-%c' needs a value", optopt);
	return usage_error(a, "unknown option '-%c'", optopt);
}

int ma_cli_opt(struct ma_cli_args *a)
{
	const char *what = a->argname ? a->argname : "PID";
	int c, n;

	if (!a->started) {
		optind = 1;
		/* ':' first: a missing value is ':', not '?'; and getopt
		 * prints nothing, opt_error() does */
		opterr = 0;
		a->started = 1;
		a->exit = -1;
		snprintf(a->opts, sizeof(a->opts), ":%s", a->shortopts);
		if (strlen(a->shortopts) + 1 >= sizeof(a->opts))
			abort(); /* a command's option letters outgrew opts */
	}
	c = getopt_long(a->argc, a->argv, a->opts, a->longopts, NULL);
	switch (c) {
	case -1:
		n = a->argc - optind;
		if (a->noargs && n)
			return usage_error(a, "no argument expected, got '%s'",
					   a->argv[optind]);
		if (!a->noargs && !n)
			return usage_error(a, "no %s given", what);
		if (!a->several && n > 1)
			return usage_error(a,
					   "one %s expected, got %d arguments",
					   what, n);
		if (a->pid && ma_parse_pid(a->argv[optind], a->pid)) {
			ma_err_set_exit(MA_EXIT_USAGE);
			return opt_end(a, ma_cli_fail(a->cmd));
		}
		return 0;
	case 'h':
		a->usage(stdout);
		return opt_end(a, MA_EXIT_OK);
	case '?':
	case ':':
		return opt_error(a, c);
	case 'O':
		if (!a->offsets)
			return c;
		if (ma_cli_offsets_pref(optarg, a->offsets))
			return opt_end(a, ma_cli_fail(a->cmd));
		return ma_cli_opt(a);
	default:
		return c;
	}
}
