/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the attacher's consumer of a hostile target's shared
 * memory.  A target memattach attaches to owns the ring memfd and the
 * aggregate area behind it (common/ma_ring.h, common/ma_agg.h) and can
 * write anything there at any time; the consumer (attacher/capture/track.c:
 * ma_ring_next, ma_event_from_rec, the TEMP replay, the aggregate reads,
 * then the capture writer and the accounting) must give a clean error or
 * carry on, never crash, hang or leak.
 *
 * The harness includes track.c itself, so that it drives the very drain(),
 * agg_read() and agg_end() the tracking loop runs, with the injection
 * replaced by a mapping built from the input:
 *
 *   byte 0     flags: bit 0 aggregated mode (an aggregate area follows the
 *              data), bit 1 the header's magic, version and sizes come
 *              from the input as they are (else they are made valid, so
 *              that mutations reach the records)
 *   then       the ring header (sizeof(struct ma_ring_hdr) bytes: the rest
 *              of its page is padding); in aggregated mode the aggregate
 *              header (sizeof(struct ma_agg_hdr)) and the first AGG_IN
 *              keys; then the data area (64 KiB: MA_RING_MIN_DATA).  What
 *              the input does not cover stays zero, as in a fresh memfd
 *
 * The harness then drains as the tracking loop does (a few DRAIN_MAX
 * rounds), reads the aggregate area and ends it, and closes the capture.
 * Seeds in tests/fuzz/corpus/ring/ are written by
 * tests/fuzz/gen_ring_seeds.py (records of every type, as the payload lays
 * them out, and aggregate keys).
 */
/* The TEMP replay's bounds, scaled down: the logic is the same, and a
 * sanitized replay of 2^24 pairs takes a minute, not a second */
#define MA_TEMP_MAX_COUNT (1ull << 12)
#define TEMP_DRAIN_PAIRS  (1ull << 10)
#define TEMP_PAIRS_PER_S  (1ull << 14)
#include "../../attacher/capture/track.c"

#include <sanitizer/asan_interface.h>
#include <sys/mman.h>

#define DATA_SIZE MA_RING_MIN_DATA
#define AGG_IN	  8 /* keys taken from the input */

/* ---- what track.c needs from the injection, not built here ---- */

int ma_payload_probe(struct ma_target *t, struct ma_payload_info *pi)
{
	(void)t;
	memset(pi, 0, sizeof(*pi));
	return -ENOENT;
}

int ma_payload_in(const struct ma_payload_info *pi, unsigned int states)
{
	(void)pi;
	(void)states;
	return 0;
}

int ma_err_busy(pid_t pid, const struct ma_payload_info *pi)
{
	(void)pid;
	(void)pi;
	return 0;
}

int ma_inject_start(struct ma_target *t, const struct ma_inject_opts *o,
		    struct ma_injection *s)
{
	(void)t;
	(void)o;
	(void)s;
	return -ENOSYS;
}

void ma_injection_close(struct ma_injection *s)
{
	(void)s;
}

/* thread names and the processes of --children: not in this harness */
int ma_pyreader_new(struct ma_mem *m, const struct ma_py_offsets *o,
		    uint64_t runtime, struct ma_pyreader **out)
{
	(void)m;
	(void)o;
	(void)runtime;
	*out = NULL;
	return -ENOSYS;
}

void ma_pyreader_free(struct ma_pyreader *r)
{
	(void)r;
}

int ma_pyreader_thread_names(struct ma_pyreader *r, struct ma_py_tname **out,
			     size_t *n)
{
	(void)r;
	*out = NULL;
	*n = 0;
	return -ENOSYS;
}

int ma_target_open(pid_t pid, const struct ma_target_opts *opts,
		   struct ma_target **out)
{
	(void)pid;
	(void)opts;
	*out = NULL;
	return -ENOSYS;
}

void ma_target_close(struct ma_target *t)
{
	(void)t;
}

/* ---- the harness ---- */

static uint8_t *map;   /* ring header, data, aggregate area */
static size_t map_len; /* of all three */
static char cap_path[64];

static void setup(void)
{
	map_len = MA_RING_HDR_SIZE + DATA_SIZE + MA_AGG_AREA_SIZE;
	/* untouched pages of the 38 MiB aggregate area cost nothing */
	map = mmap(NULL, map_len, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED)
		abort();
	snprintf(cap_path, sizeof(cap_path), "/tmp/ma-fuzz-ring-%d.cap",
		 (int)getpid());
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	static int ready;
	struct ma_track tr = { .pid = 1, .complete = 1, .t0 = ma_now_ns() };
	struct ma_ring_hdr *h;
	struct ma_capture_meta meta = { .pid = 1, .py_version = "3.12.0" };
	struct ma_track_result res;
	uint8_t flags;
	int agg;

	if (!ready) {
		setup();
		ready = 1;
	}
	if (n < 1)
		return 0;
	flags = d[0];
	agg = flags & 1;
	d++;
	n--;
	/* the input's pieces, each to its place in the mapping */
	{
		struct {
			size_t at, len;
		} part[] = {
			{ 0, sizeof(struct ma_ring_hdr) },
			{ MA_RING_HDR_SIZE + DATA_SIZE,
			  agg ? sizeof(struct ma_agg_hdr) : 0 },
			{ MA_RING_HDR_SIZE + DATA_SIZE + MA_AGG_HDR_SIZE,
			  agg ? AGG_IN * sizeof(struct ma_agg_key) : 0 },
			{ MA_RING_HDR_SIZE, DATA_SIZE },
		};

		for (size_t i = 0; i < sizeof(part) / sizeof(part[0]); i++) {
			size_t k = n < part[i].len ? n : part[i].len;

			memcpy(map + part[i].at, d, k);
			d += k;
			n -= k;
		}
	}
	h = (struct ma_ring_hdr *)map;
	if (!(flags & 2)) {
		h->magic = MA_RING_MAGIC;
		h->version = MA_RING_VERSION;
		h->hdr_size = MA_RING_HDR_SIZE;
		h->data_size = DATA_SIZE;
		/* the consumer starts where the ring says: keep it within a
		 * lap of the data the input wrote */
		h->tail &= DATA_SIZE - 1;
		h->head = h->tail + (h->head & (2 * DATA_SIZE - 1));
	}
	tr.s.ring = h;
	tr.s.data = map + MA_RING_HDR_SIZE;
	tr.s.map_len = MA_RING_HDR_SIZE + DATA_SIZE;
	if (agg) {
		struct ma_agg_hdr *a =
			(void *)(map + MA_RING_HDR_SIZE + DATA_SIZE);

		tr.s.map_len += MA_AGG_AREA_SIZE;
		/* map_ring() checked these three before the session */
		a->magic = MA_AGG_MAGIC;
		a->key_cap = MA_AGG_KEYS;
		a->key_size = sizeof(struct ma_agg_key);
		tr.s.agg = a;
		tr.prev = calloc(MA_AGG_KEYS, sizeof(*tr.prev));
		if (!tr.prev)
			abort();
	}
	/* the real mapping ends with the data when there is no aggregate
	 * area: a read past it must be caught */
	if (!agg)
		ASAN_POISON_MEMORY_REGION(map + MA_RING_HDR_SIZE + DATA_SIZE,
					  MA_AGG_AREA_SIZE);
	if (ma_capture_create(cap_path, &meta, &tr.w) < 0)
		abort();
	if (ma_account_new(&tr.acc) < 0)
		abort();
	if (ma_ring_reader_init(&tr.rd, map, tr.s.map_len) < 0)
		tr.error = -EPROTO;
	/* the tracking loop: a few rounds of drain and aggregate reads
	 * (each round is where it heartbeats and checks for a stop) */
	for (int round = 0; round < 4 && !tr.error; round++) {
		drain(&tr, DRAIN_MAX);
		if (agg)
			agg_read(&tr);
	}
	/* as the session ends, whatever went wrong: the last aggregate
	 * read, the peaks, the trailer */
	ma_track_finish(&tr, &res);
	ma_err_clear();
	ma_account_free(tr.acc);
	free(tr.prev);
	free(tr.rec);
	unlink(cap_path);
	ASAN_UNPOISON_MEMORY_REGION(map + MA_RING_HDR_SIZE + DATA_SIZE,
				    MA_AGG_AREA_SIZE);
	/* the next input starts from zeroes, as a fresh memfd does */
	memset(map, 0, MA_RING_HDR_SIZE + DATA_SIZE);
	if (agg)
		memset(map + MA_RING_HDR_SIZE + DATA_SIZE, 0,
		       MA_AGG_HDR_SIZE + AGG_IN * sizeof(struct ma_agg_key));
	return 0;
}
