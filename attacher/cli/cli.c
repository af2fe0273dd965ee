/* SPDX-License-Identifier: MIT */
/* The CLI layer shared by the command files (cli.h) */
#include "cli.h"

#include <errno.h>
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

/* Stop the option loop with this exit code */
static int opt_end(struct ma_cli_args *a, int code)
{
	a->exit = code;
	return 0;
}

int ma_cli_opt(struct ma_cli_args *a)
{
	int c;

	if (!a->started) {
		optind = 1;
		a->started = 1;
		a->exit = -1;
	}
	c = getopt_long(a->argc, a->argv, a->shortopts, a->longopts, NULL);
	switch (c) {
	case -1:
		if (optind != a->argc - 1 &&
		    !(a->several && optind < a->argc)) {
			a->usage(stderr);
			return opt_end(a, MA_EXIT_USAGE);
		}
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
		a->usage(stderr);
		return opt_end(a, MA_EXIT_USAGE);
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
