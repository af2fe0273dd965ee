/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the capture reader and everything a report does with
 * what it reads.  Each input is a capture file (written to a memfd and
 * opened by path, as `memattach report` opens files); it is streamed
 * through the reader, the accounting and the temporary tracker into the
 * report model, and rendered in every format, to /dev/null.  Damage must
 * give a clean error or a truncated report: never a crash, a leak, a hang
 * or undefined behaviour (built with ASan and UBSan).
 *
 * Two shapes of input, by the first byte: 0x01, the rest is the raw
 * (decompressed) content of one events block,
 * which the harness wraps into a valid file (header, block header, zstd
 * frame, CRCs per docs/capture-format.md).  Mutations of a real file
 * rarely get past the CRCs and zstd; this shape sends them straight into
 * the stream decoder, the accounting and the reports.  Anything else is
 * the file itself ("MEMATCAP..."): header, framing and CRC checks.
 *
 * Built with clang by tests/CMakeLists.txt when the fuzzer runtime is
 * installed; run by tests/fuzz/run_fuzz.sh on tests/fuzz/corpus/capture/.  Seeds:
 * scenario.seed (MA_REPORT_SCENARIO=path tests/test_report), synthetic-*
 * (tools/gen-capture with 150 and 1500 allocations, one cut at 1000
 * bytes), real-growth.seed (memattach attach --duration 0.2 on
 * tests/targets/growth.py), raw-*.blk (0x01 and the first block of those,
 * decompressed); the files named by a hash were found by fuzzing and kept
 * with libFuzzer's -merge=1 (small ones only).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "errors.h"
#include "report.h"

static FILE *devnull;

static void le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t varint(const uint8_t *p, size_t n, size_t *at)
{
	uint64_t v = 0;

	for (int s = 0; *at < n && s < 64; s += 7) {
		uint8_t b = p[(*at)++];

		v |= (uint64_t)(b & 0x7f) << s;
		if (!(b & 0x80))
			break;
	}
	return v;
}

/* raw block content -> a whole capture file (malloc'ed) */
static uint8_t *wrap_block(const uint8_t *raw, size_t n, size_t *len)
{
	size_t bound = ZSTD_compressBound(n), at = 0, cap = 52 + 36 + bound;
	uint8_t *f = calloc(1, cap), *h, *b;
	ZSTD_CCtx *z = ZSTD_createCCtx();
	size_t p;
	uint32_t nev;

	if (!f || !z) {
		free(f);
		ZSTD_freeCCtx(z);
		return NULL;
	}
	/* the event count is the OP stream's length: the second varint */
	varint(raw, n, &at);
	nev = (uint32_t)varint(raw, n, &at);
	h = f;
	memcpy(h, "MEMATCAP", 8);
	le32(h + 8, 1);
	le32(h + 12, 52);
	le32(h + 16, 4242);
	le32(h + 20, 0x030b02f0);
	le64(h + 32, 1732550000000000000ull);
	le32(h + 48, (uint32_t)crc32(0, h, 48));
	b = f + 52;
	ZSTD_CCtx_setParameter(z, ZSTD_c_checksumFlag, 1);
	p = ZSTD_compress2(z, b + 36, bound, raw, n);
	ZSTD_freeCCtx(z);
	if (ZSTD_isError(p)) {
		free(f);
		return NULL;
	}
	memcpy(b, "MABK", 4);
	b[4] = 1; /* events */
	b[5] = 1; /* zstd */
	le32(b + 8, (uint32_t)p);
	le32(b + 12, (uint32_t)n);
	le64(b + 16, 0);
	le32(b + 24, nev);
	le32(b + 28, (uint32_t)crc32(0, b + 36, (uInt)p));
	le32(b + 32, (uint32_t)crc32(0, b, 32));
	*len = 52 + 36 + p;
	return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ma_report_opts o;
	struct ma_report *r = NULL;
	uint8_t *wrapped = NULL;
	size_t wlen = 0;
	char path[64];
	int fd;

	if (!devnull)
		devnull = fopen("/dev/null", "w");
	if (size > 1 && data[0] == 0x01) {
		wrapped = wrap_block(data + 1, size - 1, &wlen);
		if (!wrapped)
			return 0;
	}
	fd = memfd_create("fuzz.cap", 0);
	if (fd < 0 ||
	    (wrapped ? write(fd, wrapped, wlen) != (ssize_t)wlen
		     : size && write(fd, data, size) != (ssize_t)size)) {
		if (fd >= 0)
			close(fd);
		free(wrapped);
		return 0;
	}
	free(wrapped);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ma_report_opts_init(&o);
	/* vary the options with the input, so that every path is reached */
	if (size) {
		o.view = (enum ma_rview)(data[size - 1] % MA_RV_N);
		o.group = (enum ma_account_view)(data[size - 1] / 4 % 4);
		o.window = data[0] % 8;
		if (data[size - 1] & 0x40)
			o.filter = "a";
		/* figures per thread; the thread table of text and csv */
		o.by_thread = data[0] & 0x10;
		o.thread_table = data[0] & 0x20;
		/* the HTML timeline (report_timeline.c) */
		o.timeline = data[0] & 0x40;
	}
	o.width = 80;
	o.color = 0;
	if (ma_report_load(path, &o, &r) == 0) {
		/* every format of the table, and its diff (with itself) */
		for (const struct ma_report_format *rf = ma_report_formats;
		     rf->name; rf++) {
			rf->render(r, devnull);
			if (rf->diff)
				rf->diff(r, r, devnull);
		}
		ma_report_free(r);
	} else if (!ma_errmsg()[0]) {
		/* every failure explains itself */
		abort();
	}
	ma_err_clear();
	close(fd);
	return 0;
}
