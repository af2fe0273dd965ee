/* SPDX-License-Identifier: MIT */
#include "errors.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static char msg[1024];
static int exit_code = MA_EXIT_ERROR;

int ma_err(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return err;
}

bool ma_err_has_context(const char *context)
{
	size_t n = strlen(context);

	return n && !strncmp(msg, context, n) &&
	       (msg[n] == '\0' || (msg[n] == ':' && msg[n + 1] == ' '));
}

int ma_err_prefix(int err, const char *fmt, ...)
{
	char old[sizeof(msg)];
	char pre[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(pre, sizeof(pre), fmt, ap);
	va_end(ap);
	if (ma_err_has_context(pre))
		return err;
	if (!msg[0]) {
		snprintf(msg, sizeof(msg), "%s", pre);
		return err;
	}
	snprintf(old, sizeof(old), "%s", msg);
	snprintf(msg, sizeof(msg), "%s: %s", pre, old);
	return err;
}

const char *ma_errmsg(void)
{
	return msg;
}

void ma_err_set_exit(int code)
{
	exit_code = code;
}

int ma_err_exit(void)
{
	return exit_code;
}

void ma_err_clear(void)
{
	msg[0] = '\0';
	exit_code = MA_EXIT_ERROR;
}
