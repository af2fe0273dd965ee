/* SPDX-License-Identifier: MIT */
/*
 * Both ends of the ring described in ma_ring.h: the producer side (used by
 * the payload, from every thread that allocates, inside malloc hooks) and the
 * consumer side (used by the attacher, one thread).
 *
 * Constraints that shape this code: the producer runs inside the target's
 * allocator hooks, so it never allocates, never prints, never takes a lock
 * and never waits longer than the configured bound.  Only libc is used (no
 * libelf/libdw), so the attacher and the payload share this file as is.
 */
#ifndef MA_RING_IO_H
#define MA_RING_IO_H

#include <stddef.h>
#include <stdint.h>

#include "ma_record.h"
#include "ma_ring.h"

/* Smallest and largest data areas accepted by both ends */
#define MA_RING_MIN_DATA (64u * 1024)
#define MA_RING_MAX_DATA (1ull << 36)

/* CLOCK_MONOTONIC in nanoseconds: the clock of heartbeat_ns, start_ns and
 * stop_ns */
uint64_t ma_ring_now_ns(void);

/* ------------------------------------------------------------------ */
/* Producer */

/* A producer's view of a mapped ring; shared by all producer threads of a
 * process. */
struct ma_ring {
	struct ma_ring_hdr *hdr;
	uint8_t *data;
	uint64_t size;	       /* data_size */
	uint32_t full_wait_us; /* bounded wait on a full ring */
	uint32_t _pad;
	/*
	 * Atomic: tail + 1 as seen when a wait last ran out, 0 when none.
	 * While the consumer has not moved since, later producers drop at
	 * once instead of each waiting full_wait_us again: a stalled consumer
	 * costs one bounded wait, not one per record.
	 */
	uint64_t stalled_tail;
};

/*
 * Lay out a ring header in mem (MA_RING_HDR_SIZE + data_size bytes, data
 * zeroed, as a fresh memfd is).  data_size: a power of two within
 * [MA_RING_MIN_DATA, MA_RING_MAX_DATA].  Returns 0 or -EINVAL.
 */
int ma_ring_init(void *mem, uint64_t data_size, uint32_t pid, uint64_t now_ns);

/* A producer view of an initialised ring */
void ma_ring_producer(struct ma_ring *r, void *mem, uint32_t full_wait_us);

/*
 * Reserve len bytes (a multiple of 8, at least 8, at most data_size / 4)
 * for one record and return where to write it, or NULL when the record was
 * dropped (the ring stayed full for full_wait_us: counted in lost_records
 * and lost_bytes) or len is invalid.  The caller fills every byte after the
 * first word (h.thread and the body), then calls ma_ring_commit().
 */
void *ma_ring_reserve(struct ma_ring *r, uint32_t len);

/* Publish a reserved record: its first word, with a release store */
void ma_ring_commit(void *rec, uint32_t type, uint32_t len);

/* ------------------------------------------------------------------ */
/* Consumer */

struct ma_ring_reader {
	struct ma_ring_hdr *hdr;
	uint8_t *data;
	uint64_t size, mask;
	uint64_t tail;	   /* next record to read (local) */
	uint64_t released; /* bytes zeroed and handed back (hdr->tail) */
	/* the first word of the record ma_ring_next returned, as checked:
	 * the target may rewrite the one in the ring meanwhile */
	uint32_t word;
	/* Giving consumed pages back to the system (ma_ring_give_back): the
	 * ring's file, or -1 (pages zeroed, they stay resident) */
	int fd;
	uint32_t slow;	     /* last second's reading rate allows it */
	uint64_t max_rate;   /* bytes a second, above which it does not */
	uint64_t rate_t0;    /* this second's start (ns) */
	uint64_t rate_mark;  /* tail at rate_t0 */
	uint64_t given_back; /* bytes handed back as holes, in all */
};

/*
 * Check the header of a mapped ring (magic, version, sizes against map_len)
 * and set up a reader at the ring's current tail.  0 or -EPROTO.
 */
int ma_ring_reader_init(struct ma_ring_reader *r, void *map, size_t map_len);

/*
 * Next published record: 1 and *out set (valid until ma_ring_release), 0 when
 * the record at the tail is not published yet (or the ring is empty, or a
 * whole ring's worth was read without a release: release, then go on),
 * -EPROTO when the ring holds a malformed length.  PAD records are skipped
 * here.
 */
int ma_ring_next(struct ma_ring_reader *r, const struct ma_rec **out);

/*
 * Hand the bytes of every record returned so far back to the producers:
 * zero them, then publish the tail.  Call it after each batch; producers
 * see free space only then.  When the reader gives pages back (below), the
 * whole pages among them are punched out of the file instead of zeroed,
 * and the tail is published up to the last whole page: at most a page less
 * than was read is handed back until the next release.
 */
void ma_ring_release(struct ma_ring_reader *r);

/*
 * Read at under this many bytes a second, a ring gives the pages it has
 * consumed back to the system (a hole punched in its memfd) instead of
 * keeping them resident in the target until the next lap: a session that
 * sends little through a big ring (aggregated tracking, whose ring carries
 * mmap calls and definitions) then holds a few pages of it, not up to the
 * whole --ring-size.  Faster, the pages come round again within seconds
 * and each would cost the writer a page fault (about 1 us) per 4 KiB: at
 * this rate at most about 1,000 a second.
 */
#define MA_RING_GIVE_BACK_RATE (4u << 20)

/*
 * Give consumed pages back through fd, a read-write descriptor of the
 * ring's memfd mapped at offset 0 (the data at MA_RING_HDR_SIZE), while
 * the last second's reading rate is under max_rate bytes a second
 * (MA_RING_GIVE_BACK_RATE).  If the file refuses a hole, the reader goes
 * back to zeroing.
 */
void ma_ring_give_back(struct ma_ring_reader *r, int fd, uint64_t max_rate);

/* Bytes reserved by producers and not yet read by this reader */
uint64_t ma_ring_backlog(const struct ma_ring_reader *r);

/* Consumer liveness, at least every 100 ms: the payload stops itself
 * (state ORPHANED) when the heartbeat is older than one second. */
void ma_ring_heartbeat(struct ma_ring_hdr *h, uint64_t now_ns);

/* Ask the payload to stop tracking (its watchdog acts within ~50 ms) */
void ma_ring_request_stop(struct ma_ring_hdr *h);

/* The payload's state word (enum ma_ring_state), acquire-loaded */
uint32_t ma_ring_state(const struct ma_ring_hdr *h);

/*
 * Map a ring file (the memfd, e.g. opened as /proc/PID/fd/N) read-write
 * shared: *map and *len cover header and data.  0 or -errno.
 */
int ma_ring_map_fd(int fd, void **map, size_t *len);

#endif
