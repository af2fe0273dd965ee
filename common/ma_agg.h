/* SPDX-License-Identifier: MIT */
/*
 * The aggregate area of aggregated tracking (MA_TRACK_AGG, the default;
 * docs/payload.md, "Aggregated tracking"): sums per key (thread, stack
 * node, kind) that the payload keeps where the events happen, and that the
 * attacher reads with the target's threads running.  It lies in the ring's
 * memfd, right after the ring's data (ma_ring_hdr.agg_off), so the attacher
 * maps it with the ring.
 *
 * Only the payload writes here.  A key's identity (thread, node, kind) is
 * written before its `ready` word is release-stored; keys are appended and
 * never removed, so the attacher reads keys[0 .. nkeys) and skips those not
 * ready.  Counters are single 64-bit words: a reader may see one counter of
 * a key newer than another, never a torn one, and the sum of the deltas it
 * reads is exact once the payload has stopped (it quiesces every thread
 * first).
 */
#ifndef MA_AGG_H
#define MA_AGG_H

#include <stddef.h>
#include <stdint.h>

#define MA_AGG_MAGIC	0x3147474141414d00ull /* "\0MAAAGG1" little-endian */
#define MA_AGG_VERSION	1
#define MA_AGG_HDR_SIZE 4096
#define MA_AGG_KEYS	65536 /* key 0 included */
/*
 * Temporary counts: blocks freed by their own thread after d further
 * allocations of that thread, by bucket: d itself for d < 16, then one
 * bucket per power of two, [16, 31], [32, 63], ... [2^19, 2^20 - 1].  The
 * temporary view of a window w (freed within w further allocations) is then
 * exact for w < 16 and for w = 2^k - 1 (a report counts the buckets that
 * lie wholly within the window).
 */
#define MA_AGG_TEMPW 32
#define MA_AGG_EXACT 16

/* The bucket of distance d, or MA_AGG_TEMPW when it has none */
static inline unsigned ma_agg_temp_bucket(uint32_t d)
{
	unsigned k;

	if (d < MA_AGG_EXACT)
		return d;
	k = 31u - (unsigned)__builtin_clz(d); /* floor(log2 d), >= 4 */
	return k < 20 ? 12 + k : MA_AGG_TEMPW;
}

/* The largest distance of bucket b */
static inline uint32_t ma_agg_temp_upper(unsigned b)
{
	return b < MA_AGG_EXACT ? b : (2u << (b - 12)) - 1;
}

struct ma_agg_key {
	uint32_t ready;	 /* atomic: 1 once thread, node and kind are set */
	uint32_t thread; /* thread index of the allocating thread */
	uint32_t node;	 /* innermost Python frame node, 0 = none */
	uint8_t kind;	 /* enum ma_alloc_kind */
	uint8_t _pad[3];
	uint64_t allocs, alloc_bytes; /* blocks allocated, their bytes */
	uint64_t frees, free_bytes;   /* blocks freed, their bytes */
	/* peak epoch of the key's last change, and its live figures when
	 * that epoch began (docs/payload.md: valid when epoch is the
	 * header's, else the peak is the live figures now) */
	uint64_t epoch, peak_bytes, peak_count;
	/* by bucket, count and bytes side by side: one line to touch */
	struct {
		uint64_t count, bytes;
	} temp[MA_AGG_TEMPW];
};
_Static_assert(sizeof(struct ma_agg_key) == 72 + 16 * MA_AGG_TEMPW,
	       "ma_agg_key: no hidden padding");

struct ma_agg_hdr {
	uint64_t magic;
	uint32_t version;
	uint32_t hdr_size; /* MA_AGG_HDR_SIZE */
	uint32_t key_cap;  /* MA_AGG_KEYS */
	uint32_t key_size; /* sizeof(struct ma_agg_key) */
	uint32_t nkeys;	   /* atomic: keys used, key 0 included */
	uint32_t _pad0;
	uint8_t _pad1[64 - 32];

	/* Live figures of the MEM and OBJ domains' blocks: written with the
	 * GIL held (or the MEM/OBJ table's lock), plain stores; and on the
	 * same line, read at every event, the peak of live_gil + live_nat
	 * and its epoch (written when a new peak is reached) */
	uint64_t live_gil, count_gil;
	uint64_t peak_bytes, peak_count;
	uint64_t epoch; /* atomic */
	uint8_t _pad2[24];
	/* Live figures of every other block: atomic additions */
	uint64_t live_nat, count_nat;
	uint8_t _pad3[48];

	/* blocks not tracked because a live table could not grow (counted
	 * nowhere else), and events filed under key 0 (no room for a new
	 * key: their stack and thread are lost, not their bytes) */
	uint64_t dropped, dropped_bytes;
	uint64_t keys_full;
	/* frees of blocks not in the live table: memory from before the
	 * attach */
	uint64_t unknown_frees;
	uint8_t _pad4[8];

	/* The live tables' memory (docs/payload.md, "The tables' budget"):
	 * bytes the payload has mapped for them (atomic, written by the
	 * payload), the most it may map (written by the attacher from the
	 * room below the target's memory cgroup's limit; 0: no limit), and
	 * whether a table stayed as it was for the budget (set by the
	 * payload, read by the attacher, which then ends the session) */
	uint64_t tab_bytes, tab_budget;
	uint32_t budget_hit;
	uint32_t _pad5;
};
_Static_assert(offsetof(struct ma_agg_hdr, live_gil) == 64,
	       "the MEM/OBJ line starts at byte 64");
_Static_assert(offsetof(struct ma_agg_hdr, live_nat) == 128,
	       "the other line starts at byte 128");
_Static_assert(sizeof(struct ma_agg_hdr) <= MA_AGG_HDR_SIZE,
	       "agg header fits its page");

/* Bytes of the area: header page and key array, rounded to pages */
#define MA_AGG_AREA_SIZE                                                       \
	((MA_AGG_HDR_SIZE + (size_t)MA_AGG_KEYS * sizeof(struct ma_agg_key) +  \
	  4095) &                                                              \
	 ~(size_t)4095)

static inline struct ma_agg_key *ma_agg_keys(struct ma_agg_hdr *h)
{
	return (struct ma_agg_key *)((uint8_t *)h + MA_AGG_HDR_SIZE);
}

#endif
