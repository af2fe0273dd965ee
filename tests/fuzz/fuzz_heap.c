/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the heap census's stream reader (attacher/heap/
 * heapwalk.c), then the census itself (census.c).  The records come from
 * the heap copy, a fork of the target that memattach does not trust any
 * more than the target: whatever they say, the reader must give a clean
 * error or a smaller graph, never a crash, a hang or undefined behaviour.
 *
 * The harness includes heapwalk.c, to drive its parse_chunk(),
 * finish_graph() and build_roots() as ma_heap_take() does, and reads the
 * copy's memory (type names, root names, the roots' frames) through
 * tests/fuzz/fuzz_memread.c.  Input:
 *
 *   byte 0      how the stream is cut into chunks: 0 one chunk, else
 *               chunks of 8 * byte 0 bytes (records cut across chunks)
 *   byte 1      the built-in offsets of one Python version (type and str
 *               layouts), modulo the table's length
 *   bytes 2-3   the stream's length n (little-endian), then n bytes of
 *               stream; the rest is the copy's memory, at MEM_BASE
 *
 * Seeds in tests/fuzz/corpus/heap/ come from gen_heap_seeds.py: objects
 * with edges (a cycle, a dangling one), types named in the memory, module
 * and local roots, pools and the end record.
 */
#include "../../attacher/heap/heapwalk.c"

#include "fuzz_memread.h"
#include "offsets_table.h"

#define MEM_BASE 0x7f3a12340000ull

/* ---- what heapwalk.c needs and the harness does not run ---- */

int ma_inject_heap_fork(struct ma_target *t, const struct ma_heap_cfg *cfg,
			struct ma_heap_copy *out)
{
	(void)t;
	(void)cfg;
	(void)out;
	return -ENOSYS;
}

int ma_heap_rss(pid_t pid, struct ma_hrss *r, const uint64_t *stack_sps,
		size_t nsps)
{
	(void)pid;
	(void)r;
	(void)stack_sps;
	(void)nsps;
	return -ENOSYS;
}

int ma_elf_open(const char *path, struct ma_elf **out)
{
	(void)path;
	*out = NULL;
	return -ENOENT;
}

void ma_elf_close(struct ma_elf *e)
{
	(void)e;
}

int ma_elf_symbol(struct ma_elf *e, const char *name, uint64_t *value,
		  uint64_t *size)
{
	(void)e;
	(void)name;
	(void)value;
	(void)size;
	return -ENOENT;
}

void ma_kill_tracee(pid_t pid)
{
	(void)pid;
}

int ma_inject_reap(struct ma_target *t, int *reaped)
{
	(void)t;
	*reaped = 0;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	struct ma_heap_graph g = { 0 };
	struct parse ps = { .g = &g };
	uint8_t how;
	struct ma_target t = { .pid = 1 };
	struct ma_heap_copy hcopy = { 0 };
	struct ma_heap_census c;
	struct ma_hcensus_opts co = { 0 };
	struct ma_mem *cm;
	size_t cut, slen, mlen;
	uint8_t *mem;
	int err = 0;

	if (n < 4 || !ma_offsets_table_len)
		return 0;
	cut = (size_t)d[0] * 8;
	how = d[0];
	t.off = ma_offsets_table[d[1] % ma_offsets_table_len];
	slen = (size_t)(d[2] | d[3] << 8);
	d += 4;
	n -= 4;
	if (slen > n)
		slen = n;
	/* the copy's memory: whole pages, as mappings are */
	mlen = (n - slen + 4095) & ~(size_t)4095;
	mem = calloc(1, mlen ? mlen : 1);
	if (!mem)
		return 0;
	memcpy(mem, d + slen, n - slen);
	fuzz_mem_set(MEM_BASE, mem, mlen);
	t.runtime_addr = MEM_BASE;
	if (ma_mem_open(2, &cm) < 0)
		abort();
	/* the stream, chunk by chunk, each in its own buffer (ASan sees a
	 * read past a chunk) */
	for (size_t at = 0; at < slen && !err;) {
		size_t k = cut && cut < slen - at ? cut : slen - at;
		uint8_t *chunk = malloc(k);

		if (!chunk)
			break;
		memcpy(chunk, d + at, k);
		err = parse_chunk(&ps, chunk, k);
		free(chunk);
		at += k;
	}
	/* as ma_heap_take: what arrived before an error is a partial
	 * census; and a graph freed before finish_graph (the copy failed
	 * midway) must free cleanly too */
	if (err && (how & 1)) {
		ma_heap_graph_free(&g);
		g = (struct ma_heap_graph){ 0 };
	} else if (!finish_graph(&ps, cm, &t.off)) {
		build_roots(&ps, cm, &t, &hcopy, &g);
		/* MA_FUZZ_HEAP_PRINT=1: what a seed makes of it */
		if (getenv("MA_FUZZ_HEAP_PRINT"))
			printf("%zu objects, %zu edges (%llu unresolved), %zu "
			       "types (%s), %zu roots (%s), %llu dups, %s\n",
			       g.n, (size_t)g.nedges,
			       (unsigned long long)g.unresolved_edges, g.ntypes,
			       g.ntypes ? g.types[0].name : "", g.nroots,
			       g.nroots ? g.roots[0].name : "",
			       (unsigned long long)ps.dups,
			       ps.ended ? "ended" : "not ended");
		if (ma_heap_census(&g, &co, NULL, &c) == 0)
			ma_heap_census_free(&c);
	}
	parse_free(&ps);
	ma_heap_graph_free(&g);
	ma_mem_close(cm);
	free(mem);
	ma_err_clear();
	return 0;
}
