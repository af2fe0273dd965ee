/* SPDX-License-Identifier: MIT */
/* The CLI layer shared by the command files (cli.h) */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
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

int ma_cli_pid_arg(int argc, char **argv, const char *cmd,
		   void (*usage)(FILE *), pid_t *pid)
{
	if (optind != argc - 1) {
		usage(stderr);
		return MA_EXIT_USAGE;
	}
	if (ma_parse_pid(argv[optind], pid)) {
		ma_err_set_exit(MA_EXIT_USAGE);
		return ma_cli_fail(cmd);
	}
	return 0;
}
