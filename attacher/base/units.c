/* SPDX-License-Identifier: MIT */
#include "units.h"

#include <stdio.h>

/* n >= base: three significant digits of n in the largest unit <= n */
static void fmt_scaled(uint64_t n, double base, const char *const units[6],
		       char *buf, size_t len)
{
	double v = (double)n;
	int u = -1;

	while (v >= base && u < 5) {
		v /= base;
		u++;
	}
	if (v < 9.995)
		snprintf(buf, len, "%.2f %s", v, units[u]);
	else if (v < 99.95)
		snprintf(buf, len, "%.1f %s", v, units[u]);
	else
		snprintf(buf, len, "%.0f %s", v, units[u]);
}

void ma_fmt_bytes(uint64_t n, char *buf, size_t len)
{
	static const char *const units[6] = { "KiB", "MiB", "GiB",
					      "TiB", "PiB", "EiB" };

	if (n < 1024)
		snprintf(buf, len, "%llu B", (unsigned long long)n);
	else
		fmt_scaled(n, 1024, units, buf, len);
}

void ma_fmt_count(uint64_t n, char *buf, size_t len)
{
	static const char *const units[6] = { "k", "M", "G", "T", "P", "E" };

	if (n < 1000)
		snprintf(buf, len, "%llu", (unsigned long long)n);
	else
		fmt_scaled(n, 1000, units, buf, len);
}
