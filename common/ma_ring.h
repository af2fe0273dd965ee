/* SPDX-License-Identifier: MIT */
/*
 * The shared-memory ring between the payload (many producers: every thread
 * of the target that allocates) and the attacher (one consumer).
 *
 * It lives in a memfd created by the payload; the attacher maps the same
 * file through /proc/PID/fd/N.  No socket, no port, and records already in
 * the ring survive the target's death.
 *
 * Layout: one 4 KiB header page (struct ma_ring_hdr), then data_size bytes
 * of data (a power of two).  head and tail are byte counters that only grow;
 * position = counter & (data_size - 1).
 *
 * Producers reserve space with a CAS on head, write the record body, then
 * publish its first word (struct ma_rec.type_len) with a release store.  A
 * record never wraps: when it does not fit before the end of the data area,
 * the producer fills the rest with a PAD record and starts at offset 0.
 * The consumer reads the word at tail: 0 means "reserved, not yet
 * published" (wait); after consuming a record it zeroes its bytes, then
 * advances tail with a release store, so that the next lap starts from zero
 * words.  A full ring (head + need - tail > data_size) makes the producer
 * wait at most cfg.full_wait_us, then drop the record and count it in
 * lost_records.
 */
#ifndef MA_RING_H
#define MA_RING_H

#include <stddef.h>
#include <stdint.h>

#define MA_RING_MAGIC	 0x31474e4952414d00ull /* "\0MARING1" little-endian */
#define MA_RING_VERSION	 2
#define MA_RING_HDR_SIZE 4096
/* The ring's memfd, as the payload names it: "/memfd:NAME (deleted)" in
 * the target's maps and descriptor links */
#define MA_RING_MEMFD_NAME "memattach-ring"

/* Payload states (ma_ring_hdr.state) */
enum ma_ring_state {
	MA_STATE_STARTING = 1,
	MA_STATE_TRACKING = 2, /* hooks installed, records flowing */
	MA_STATE_STOPPING = 3,
	MA_STATE_STOPPED =
		4, /* hooks removed on request; final stats written */
	MA_STATE_ORPHANED = 5, /* consumer vanished: hooks removed by itself */
	MA_STATE_FAILED = 6,   /* an internal error disabled the payload */
};

/* Commands from the attacher (ma_ring_hdr.command) */
enum ma_ring_command {
	MA_CMD_NONE = 0,
	MA_CMD_STOP = 1,
};

struct ma_ring_hdr {
	uint64_t magic;
	uint32_t version;
	uint32_t hdr_size;  /* MA_RING_HDR_SIZE */
	uint64_t data_size; /* power of two */
	uint32_t target_pid;
	uint32_t _pad0;
	uint64_t start_ns; /* CLOCK_MONOTONIC when tracking started */
	uint8_t _pad1[64 - 40];

	/* Producers' line */
	uint64_t head; /* atomic: bytes reserved */
	uint8_t _pad2[56];

	/* Consumer's line */
	uint64_t tail; /* atomic: bytes consumed */
	uint64_t
		heartbeat_ns; /* atomic: consumer's CLOCK_MONOTONIC, <=100 ms old */
	uint32_t command;     /* atomic: enum ma_ring_command */
	uint32_t _pad3;
	uint8_t _pad4[40];

	/* Payload status and counters (atomic, written by the payload) */
	uint32_t state; /* enum ma_ring_state */
	int32_t error;	/* negative errno of the failure that disabled it */
	uint64_t lost_records; /* dropped because the ring stayed full */
	uint64_t lost_bytes;
	uint64_t records;  /* published */
	uint64_t stop_ns;  /* CLOCK_MONOTONIC when hooks were removed */
	char message[128]; /* why it failed or went orphaned */

	/* GOT hooks: ma_start leaves them to the watchdog, which finds and
	 * patches the slots with the threads running, so that the freeze does
	 * not grow with the number of loaded libraries (docs/payload.md, "GOT
	 * patching").  The attacher waits for got_state before it says the
	 * process is attached. */
	int32_t got_state;    /* atomic: enum ma_got_state, or -errno */
	uint32_t got_slots;   /* slots patched */
	uint32_t got_modules; /* modules scanned */
	/* bit d: CPython's allocator domain d (RAW 0, MEM 1, OBJ 2) found in
	 * its data, so that the stop swaps it back whole with the threads
	 * running (injector/pyalloc.c); set before got_state */
	uint32_t py_domains;
	uint64_t got_ns; /* the watchdog's time to scan and patch */

	/* MA_TRACK_AGG: the aggregate area (common/ma_agg.h) in this memfd,
	 * after the data; 0 and 0 when the session records events */
	uint64_t agg_off, agg_size;
};

enum ma_got_state {
	MA_GOT_PENDING = 0, /* the watchdog has not patched yet */
	MA_GOT_DONE = 1,    /* every module loaded then is patched */
	MA_GOT_NONE = 2,    /* the session ended before patching */
};

_Static_assert(sizeof(struct ma_ring_hdr) <= MA_RING_HDR_SIZE,
	       "ring header fits its page");
/* Each line of 64 bytes starts where the padding above says */
_Static_assert(offsetof(struct ma_ring_hdr, _pad1) == 40,
	       "the fixed fields take 40 bytes");
_Static_assert(offsetof(struct ma_ring_hdr, head) == 64,
	       "the producers' line starts at byte 64");
_Static_assert(offsetof(struct ma_ring_hdr, tail) == 128,
	       "the consumer's line starts at byte 128");
_Static_assert(offsetof(struct ma_ring_hdr, state) == 192,
	       "the payload's status starts at byte 192");

#endif
