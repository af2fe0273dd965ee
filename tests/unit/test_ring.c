/* SPDX-License-Identifier: MIT */
/*
 * The ring (common/ma_ring_io.c): header checks, wrap-around with PAD
 * records, many producers against one consumer (every record arrives intact
 * and in its producer's order), and a full ring (a bounded wait, then drops
 * that are counted, and no second wait while the consumer stays stalled).
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../common/ma_ring_io.h"

#define RECTYPE 2 /* any non-PAD type */

static void *ring_mem(uint64_t data)
{
	void *p = mmap(NULL, MA_RING_HDR_SIZE + data, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	cr_assert(p != MAP_FAILED);
	cr_assert(ma_ring_init(p, data, 42, 1) == 0);
	return p;
}

/* A test record: producer, sequence number, then a fill pattern */
struct trec {
	struct ma_rec h;
	uint32_t producer, len;
	uint64_t seq;
};

static uint8_t fill(uint32_t producer, uint64_t seq, size_t i)
{
	return (uint8_t)(producer * 31 + seq * 7 + i);
}

static int put(struct ma_ring *r, uint32_t producer, uint64_t seq, uint32_t len)
{
	struct trec *t = ma_ring_reserve(r, len);

	if (!t)
		return 0;
	t->h.thread = producer;
	t->producer = producer;
	t->len = len;
	t->seq = seq;
	for (size_t i = sizeof(*t); i < len; i++)
		((uint8_t *)t)[i] = fill(producer, seq, i);
	ma_ring_commit(t, RECTYPE, len);
	return 1;
}

/* 0 when rec is a well-formed test record */
static int check(const struct ma_rec *rec, uint32_t *producer, uint64_t *seq)
{
	const struct trec *t = (const void *)rec;
	uint32_t len = ma_rec_len(rec->type_len);

	if (ma_rec_type(rec->type_len) != RECTYPE || t->len != len ||
	    t->h.thread != t->producer)
		return -1;
	for (size_t i = sizeof(*t); i < len; i++)
		if (((const uint8_t *)t)[i] != fill(t->producer, t->seq, i))
			return -1;
	*producer = t->producer;
	*seq = t->seq;
	return 0;
}

static uint32_t len_of(uint64_t seq)
{
	return (uint32_t)(sizeof(struct trec) + (seq * 40503u % 33) * 8);
}

Test(ring, header_checks)
{
	uint8_t *mem = ring_mem(MA_RING_MIN_DATA);
	struct ma_ring_reader r;

	cr_expect(ma_ring_init(mem, 65536 + 8, 1, 1) == -EINVAL);
	cr_expect(ma_ring_init(mem, 4096, 1, 1) == -EINVAL);
	cr_expect(ma_ring_reader_init(&r, mem, 4096) == -EPROTO,
		  "a map shorter than the data area");
	cr_assert(ma_ring_reader_init(
			  &r, mem, MA_RING_HDR_SIZE + MA_RING_MIN_DATA) == 0);
	cr_expect(r.hdr->target_pid == 42 && r.hdr->state == MA_STATE_STARTING);
	/* a tail the producer never writes (issue 13: a hostile target's
	 * header made every record word an unaligned load) */
	((struct ma_ring_hdr *)mem)->tail = 4;
	cr_expect(ma_ring_reader_init(&r, mem,
				      MA_RING_HDR_SIZE + MA_RING_MIN_DATA) ==
			  -EPROTO,
		  "an unaligned tail");
	((struct ma_ring_hdr *)mem)->tail = 0;
	((struct ma_ring_hdr *)mem)->version = 99;
	cr_expect(ma_ring_reader_init(&r, mem,
				      MA_RING_HDR_SIZE + MA_RING_MIN_DATA) ==
		  -EPROTO);
	munmap(mem, MA_RING_HDR_SIZE + MA_RING_MIN_DATA);
}

Test(ring, reserve_rejects_bad_lengths)
{
	uint8_t *mem = ring_mem(MA_RING_MIN_DATA);
	struct ma_ring p;

	ma_ring_producer(&p, mem, 0);
	cr_expect(ma_ring_reserve(&p, 0) == NULL);
	cr_expect(ma_ring_reserve(&p, 12) == NULL);
	cr_expect(ma_ring_reserve(&p, MA_RING_MIN_DATA / 2) == NULL);
	cr_expect(p.hdr->head == 0);
	munmap(mem, MA_RING_HDR_SIZE + MA_RING_MIN_DATA);
}

/* One thread, many laps: PAD records at the end of each lap are skipped,
 * records come back in order, and released space is zero again */
Test(ring, laps_and_padding)
{
	uint8_t *mem = ring_mem(MA_RING_MIN_DATA);
	struct ma_ring p;
	struct ma_ring_reader r;
	uint64_t next = 0;

	ma_ring_producer(&p, mem, 0);
	cr_assert(ma_ring_reader_init(
			  &r, mem, MA_RING_HDR_SIZE + MA_RING_MIN_DATA) == 0);
	for (uint64_t seq = 0; seq < 50000; seq++) {
		const struct ma_rec *rec;
		uint32_t prod;
		uint64_t s;

		cr_assert(put(&p, 7, seq, len_of(seq)), "reserve %lu",
			  (unsigned long)seq);
		if (seq % 17 != 16)
			continue;
		while (ma_ring_next(&r, &rec) == 1) {
			cr_assert(check(rec, &prod, &s) == 0);
			cr_assert(prod == 7 && s == next, "got %lu, want %lu",
				  (unsigned long)s, (unsigned long)next);
			next++;
		}
		ma_ring_release(&r);
	}
	cr_expect(p.hdr->head > 10 * MA_RING_MIN_DATA, "several laps");
	cr_expect(p.hdr->lost_records == 0);
	/* everything handed back is zero */
	for (size_t i = 0; i < MA_RING_MIN_DATA; i += 8) {
		uint64_t pos = (p.hdr->tail + i) & (MA_RING_MIN_DATA - 1);

		if (p.hdr->tail + i >= p.hdr->head + MA_RING_MIN_DATA - 8)
			break;
		if (p.hdr->tail + i < p.hdr->head)
			continue;
		cr_assert(*(uint64_t *)(mem + MA_RING_HDR_SIZE + pos) == 0);
	}
	munmap(mem, MA_RING_HDR_SIZE + MA_RING_MIN_DATA);
}

/* ------------------------------------------------------------------ */

#define NPROD	 4
#define PER_PROD 200000

struct stress {
	struct ma_ring p;
	struct ma_ring_reader r;
	uint8_t *mem;
	volatile int done;
	uint64_t received[NPROD], sent[NPROD], gaps, bad, order;
	uint64_t next[NPROD]; /* sequence number after the last received */
	int id;
};

struct prod_arg {
	struct stress *st;
	uint32_t id;
};

static void *producer_main(void *arg)
{
	struct prod_arg *a = arg;

	for (uint64_t seq = 0; seq < PER_PROD; seq++)
		a->st->sent[a->id] +=
			put(&a->st->p, a->id + 1, seq, len_of(seq + a->id));
	return NULL;
}

static void *consumer_main(void *arg)
{
	struct stress *st = arg;
	uint64_t expect[NPROD] = { 0 };
	unsigned int n = 0;

	for (;;) {
		const struct ma_rec *rec;
		int got = ma_ring_next(&st->r, &rec);

		if (got < 0) {
			st->bad++;
			break;
		}
		if (got == 0) {
			ma_ring_release(&st->r);
			if (st->done && ma_ring_backlog(&st->r) == 0)
				break;
			/* a slow consumer, now and then */
			if (++n % 64 == 0)
				usleep(200);
			continue;
		}
		uint32_t prod;
		uint64_t seq;

		if (check(rec, &prod, &seq) || prod < 1 || prod > NPROD) {
			st->bad++;
			continue;
		}
		/* in order per producer; drops leave gaps, never reorder */
		if (seq < expect[prod - 1])
			st->order++;
		else if (seq > expect[prod - 1])
			st->gaps += seq - expect[prod - 1];
		expect[prod - 1] = seq + 1;
		st->received[prod - 1]++;
		if (++n % 8 == 0)
			ma_ring_release(&st->r);
	}
	memcpy(st->next, expect, sizeof(expect));
	return NULL;
}

/* A ring in a memfd, mapped twice as in a session: the producers' mapping
 * (returned) and the consumer's (*cons); *fd open read-write */
static uint8_t *ring_memfd(uint64_t data, int *fd, uint8_t **cons)
{
	size_t len = MA_RING_HDR_SIZE + data;
	void *p, *c;

	*fd = memfd_create("ring-test", MFD_CLOEXEC);
	cr_assert(*fd >= 0 && ftruncate(*fd, (off_t)len) == 0);
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
	c = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
	cr_assert(p != MAP_FAILED && c != MAP_FAILED);
	cr_assert(ma_ring_init(p, data, 42, 1) == 0);
	*cons = c;
	return p;
}

/* Bytes of the ring's file in memory */
static uint64_t file_resident(int fd)
{
	struct stat st;

	cr_assert(fstat(fd, &st) == 0);
	return (uint64_t)st.st_blocks * 512;
}

/* give_back: the consumer punches its pages out of a memfd at every
 * release (no rate limit) */
static void run_stress(struct stress *st, uint32_t wait_us, int give_back)
{
	pthread_t prod[NPROD], cons;
	struct prod_arg args[NPROD];
	uint8_t *cmem = NULL;
	int fd = -1;

	if (give_back)
		st->mem = ring_memfd(MA_RING_MIN_DATA, &fd, &cmem);
	else
		st->mem = cmem = ring_mem(MA_RING_MIN_DATA);
	ma_ring_producer(&st->p, st->mem, wait_us);
	cr_assert(ma_ring_reader_init(&st->r, cmem,
				      MA_RING_HDR_SIZE + MA_RING_MIN_DATA) ==
		  0);
	if (give_back)
		ma_ring_give_back(&st->r, fd, UINT64_MAX);
	pthread_create(&cons, NULL, consumer_main, st);
	for (uint32_t i = 0; i < NPROD; i++) {
		args[i] = (struct prod_arg){ st, i };
		pthread_create(&prod[i], NULL, producer_main, &args[i]);
	}
	for (int i = 0; i < NPROD; i++)
		pthread_join(prod[i], NULL);
	st->done = 1;
	pthread_join(cons, NULL);
	if (give_back) {
		cr_expect(st->r.fd == fd, "the memfd refused a hole");
		cr_expect(st->r.given_back > 4 * MA_RING_MIN_DATA,
			  "%lu bytes given back",
			  (unsigned long)st->r.given_back);
		munmap(cmem, MA_RING_HDR_SIZE + MA_RING_MIN_DATA);
		close(fd);
	}
}

/* Many producers, a bounded wait long enough for the consumer: nothing may
 * be lost, reordered or torn */
static void stress_lossless(int give_back)
{
	struct stress *st = calloc(1, sizeof(*st));

	run_stress(st, 2000000, give_back);
	cr_expect(st->bad == 0, "%lu torn or malformed records",
		  (unsigned long)st->bad);
	cr_expect(st->order == 0, "%lu out of order", (unsigned long)st->order);
	cr_expect(st->p.hdr->lost_records == 0, "%lu lost",
		  (unsigned long)st->p.hdr->lost_records);
	for (int i = 0; i < NPROD; i++)
		cr_expect(st->received[i] == PER_PROD, "producer %d: %lu of %d",
			  i, (unsigned long)st->received[i], PER_PROD);
	/* all of it handed back; giving pages back keeps the last partial
	 * page */
	cr_expect(st->p.hdr->head - st->p.hdr->tail < (give_back ? 4096u : 1u),
		  "head %lu, tail %lu", (unsigned long)st->p.hdr->head,
		  (unsigned long)st->p.hdr->tail);
	munmap(st->mem, MA_RING_HDR_SIZE + MA_RING_MIN_DATA);
	free(st);
}

Test(ring, producers_stress, .timeout = 120)
{
	stress_lossless(0);
}

/* The same with the consumed pages punched out of the ring's file while
 * the producers write the pages next to them */
Test(ring, producers_stress_giving_pages_back, .timeout = 120)
{
	stress_lossless(1);
}

/*
 * A session that sends little through a big ring: four laps of records,
 * read and released in uneven batches.  Giving pages back, the file holds
 * a few pages at any time and every record arrives intact; zeroing, the
 * whole ring stays in memory.
 */
static uint64_t laps_resident(int give_back, uint64_t *given_back)
{
	const uint64_t data = 1u << 20;
	struct ma_ring p;
	struct ma_ring_reader r;
	uint8_t *cmem, *mem;
	uint64_t seq = 0, got = 0, most = 0;
	int fd;

	mem = ring_memfd(data, &fd, &cmem);
	ma_ring_producer(&p, mem, 0);
	cr_assert(ma_ring_reader_init(&r, cmem, MA_RING_HDR_SIZE + data) == 0);
	if (give_back == 1)
		ma_ring_give_back(&r, fd, UINT64_MAX);
	while (p.hdr->head < 4 * data) {
		const struct ma_rec *rec;
		uint32_t prod;
		uint64_t s;

		/* a batch of 1 to 97 records, then read it all */
		for (uint64_t i = 0, n = 1 + seq % 97; i < n; i++, seq++)
			cr_assert(put(&p, 1, seq, len_of(seq)));
		while (ma_ring_next(&r, &rec) == 1) {
			cr_assert(check(rec, &prod, &s) == 0 && s == got,
				  "record %lu", (unsigned long)got);
			got++;
		}
		ma_ring_release(&r);
		/* 2: from the second batch on, the first release starting
		 * within a page (the rate went down) */
		if (give_back == 2 && r.fd < 0) {
			cr_assert(r.released % 4096 != 0);
			ma_ring_give_back(&r, fd, UINT64_MAX);
		}
		if (file_resident(fd) > most)
			most = file_resident(fd);
	}
	cr_expect(got == seq && p.hdr->lost_records == 0);
	*given_back = r.given_back;
	munmap(cmem, MA_RING_HDR_SIZE + data);
	munmap(mem, MA_RING_HDR_SIZE + data);
	close(fd);
	return most;
}

Test(ring, gives_pages_back)
{
	uint64_t gb, kept = laps_resident(0, &gb), held;

	cr_expect(gb == 0);
	cr_expect(kept >= (1u << 20), "zeroing held %lu bytes",
		  (unsigned long)kept);
	held = laps_resident(1, &gb);
	cr_expect(held <= 64 * 1024, "giving back held %lu bytes",
		  (unsigned long)held);
	cr_expect(gb >= 3 * (1u << 20), "%lu bytes given back",
		  (unsigned long)gb);
	held = laps_resident(2, &gb);
	cr_expect(held <= 64 * 1024 && gb >= 3 * (1u << 20),
		  "from a tail within a page: held %lu, gave back %lu",
		  (unsigned long)held, (unsigned long)gb);
}

/* Read faster than the rate allows, the pages stay (no fault per page for
 * the writers); slower, they go */
Test(ring, gives_back_only_when_slow)
{
	const uint64_t data = MA_RING_MIN_DATA;
	struct ma_ring p;
	struct ma_ring_reader r;
	const struct ma_rec *rec;
	uint8_t *cmem, *mem;
	uint64_t seq = 0, t0;
	int fd;

	mem = ring_memfd(data, &fd, &cmem);
	ma_ring_producer(&p, mem, 0);
	cr_assert(ma_ring_reader_init(&r, cmem, MA_RING_HDR_SIZE + data) == 0);
	/* 1 KiB a second at most: the records below take a second and more
	 * at well over that */
	ma_ring_give_back(&r, fd, 1024);
	t0 = ma_ring_now_ns();
	while (ma_ring_now_ns() - t0 < 1100000000ull) {
		cr_assert(put(&p, 1, seq++, 64));
		while (ma_ring_next(&r, &rec) == 1)
			;
		ma_ring_release(&r);
		usleep(1000);
	}
	uint64_t first = r.given_back;

	cr_expect(first > 0, "nothing given back in the first second");
	for (int i = 0; i < 200; i++) {
		cr_assert(put(&p, 1, seq++, 64));
		while (ma_ring_next(&r, &rec) == 1)
			;
		ma_ring_release(&r);
	}
	cr_expect(r.given_back == first, "given back at %lu bytes a second",
		  (unsigned long)(64 * seq));
	munmap(cmem, MA_RING_HDR_SIZE + data);
	munmap(mem, MA_RING_HDR_SIZE + data);
	close(fd);
}

/* No wait at all: records are dropped whenever the ring is full, and what
 * arrives is still intact and in order; sent + lost adds up */
Test(ring, producers_with_drops, .timeout = 120)
{
	struct stress *st = calloc(1, sizeof(*st));
	uint64_t sent = 0, received = 0;

	run_stress(st, 0, 0);
	for (int i = 0; i < NPROD; i++) {
		sent += st->sent[i];
		received += st->received[i];
	}
	cr_expect(st->bad == 0 && st->order == 0);
	cr_expect(received == sent, "received %lu, sent %lu",
		  (unsigned long)received, (unsigned long)sent);
	cr_expect(sent + st->p.hdr->lost_records == (uint64_t)NPROD * PER_PROD,
		  "sent %lu + lost %lu", (unsigned long)sent,
		  (unsigned long)st->p.hdr->lost_records);
	/* every lost record is a gap, or among the last ones */
	for (int i = 0; i < NPROD; i++)
		st->gaps += PER_PROD - st->next[i];
	cr_expect(st->gaps == st->p.hdr->lost_records, "gaps %lu, lost %lu",
		  (unsigned long)st->gaps,
		  (unsigned long)st->p.hdr->lost_records);
	munmap(st->mem, MA_RING_HDR_SIZE + MA_RING_MIN_DATA);
	free(st);
}

/* A ring nobody reads: one bounded wait, then drops without waiting until
 * the consumer moves again */
Test(ring, full_ring_bounded_wait)
{
	uint8_t *mem = ring_mem(MA_RING_MIN_DATA);
	struct ma_ring p;
	struct ma_ring_reader r;
	const struct ma_rec *rec;
	uint64_t seq = 0, t0, t1, t2;

	ma_ring_producer(&p, mem, 50000); /* 50 ms */
	cr_assert(ma_ring_reader_init(
			  &r, mem, MA_RING_HDR_SIZE + MA_RING_MIN_DATA) == 0);
	while (p.hdr->head + 64 <= MA_RING_MIN_DATA)
		cr_assert(put(&p, 1, seq++, 64));
	t0 = ma_ring_now_ns();
	cr_expect(!put(&p, 1, seq, 64), "a full ring took a record");
	t1 = ma_ring_now_ns();
	cr_expect(t1 - t0 >= 45000000 && t1 - t0 < 1000000000, "waited %lu ns",
		  (unsigned long)(t1 - t0));
	cr_expect(p.hdr->lost_records == 1 && p.hdr->lost_bytes == 64);
	cr_expect(!put(&p, 1, seq, 64));
	t2 = ma_ring_now_ns();
	cr_expect(t2 - t1 < 10000000, "second drop waited %lu ns",
		  (unsigned long)(t2 - t1));
	cr_expect(p.hdr->lost_records == 2 && p.hdr->lost_bytes == 128);
	/* the consumer catches up: records go in again */
	for (int i = 0; i < 10; i++)
		cr_assert(ma_ring_next(&r, &rec) == 1);
	ma_ring_release(&r);
	cr_expect(put(&p, 1, seq, 64));
	munmap(mem, MA_RING_HDR_SIZE + MA_RING_MIN_DATA);
}

/* A producer waiting on a full ring gets in as soon as space is released */
static void *release_later(void *arg)
{
	struct ma_ring_reader *r = arg;
	const struct ma_rec *rec;

	usleep(20000);
	while (ma_ring_next(r, &rec) == 1)
		;
	ma_ring_release(r);
	return NULL;
}

Test(ring, full_ring_waits_for_space)
{
	uint8_t *mem = ring_mem(MA_RING_MIN_DATA);
	struct ma_ring p;
	struct ma_ring_reader r;
	pthread_t th;
	uint64_t seq = 0;

	ma_ring_producer(&p, mem, 2000000);
	cr_assert(ma_ring_reader_init(
			  &r, mem, MA_RING_HDR_SIZE + MA_RING_MIN_DATA) == 0);
	while (p.hdr->head + 64 <= MA_RING_MIN_DATA)
		cr_assert(put(&p, 1, seq++, 64));
	pthread_create(&th, NULL, release_later, &r);
	cr_expect(put(&p, 1, seq, 64), "the waiting producer was dropped");
	pthread_join(th, NULL);
	cr_expect(p.hdr->lost_records == 0);
	munmap(mem, MA_RING_HDR_SIZE + MA_RING_MIN_DATA);
}

Test(ring, malformed_length)
{
	uint8_t *mem = ring_mem(MA_RING_MIN_DATA);
	struct ma_ring_reader r;
	const struct ma_rec *rec;

	cr_assert(ma_ring_reader_init(
			  &r, mem, MA_RING_HDR_SIZE + MA_RING_MIN_DATA) == 0);
	((struct ma_rec *)(mem + MA_RING_HDR_SIZE))->type_len =
		ma_rec_make(RECTYPE, 12);
	cr_expect(ma_ring_next(&r, &rec) == -EPROTO);
	((struct ma_rec *)(mem + MA_RING_HDR_SIZE))->type_len =
		ma_rec_make(RECTYPE, MA_RING_MIN_DATA + 8);
	cr_expect(ma_ring_next(&r, &rec) == -EPROTO);
	munmap(mem, MA_RING_HDR_SIZE + MA_RING_MIN_DATA);
}

Test(ring, map_fd)
{
	int fd = memfd_create("ring-test", MFD_CLOEXEC);
	size_t len = MA_RING_HDR_SIZE + MA_RING_MIN_DATA, mlen;
	struct ma_ring_reader r;
	void *mem, *map;

	cr_assert(fd >= 0 && ftruncate(fd, (off_t)len) == 0);
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	cr_assert(mem != MAP_FAILED);
	cr_assert(ma_ring_map_fd(fd, &map, &mlen) == -EPROTO, "no header yet");
	cr_assert(ma_ring_init(mem, MA_RING_MIN_DATA, 1, 1) == 0);
	cr_assert(ma_ring_map_fd(fd, &map, &mlen) == 0);
	cr_expect(mlen == len);
	cr_assert(ma_ring_reader_init(&r, map, mlen) == 0);
	ma_ring_heartbeat(r.hdr, 1234);
	ma_ring_request_stop(r.hdr);
	cr_expect(((struct ma_ring_hdr *)mem)->heartbeat_ns == 1234);
	cr_expect(((struct ma_ring_hdr *)mem)->command == MA_CMD_STOP);
	munmap(map, mlen);
	munmap(mem, len);
	close(fd);
}
