/* SPDX-License-Identifier: MIT */
/*
 * GOT patching: every loaded module's relocations that name one of our
 * hooked functions (JUMP_SLOT for calls through the PLT, GLOB_DAT for calls
 * through the GOT and for taken addresses) get our hook; the old value is
 * saved and put back on stop.
 *
 * Skipped: ld.so (its calls are internal), the vdso, and the payload itself
 * (its own calls to libc must stay real).  The main executable is patched
 * like any module: on a non-PIE one its canonical PLT stubs jump through the
 * slots we patch, which is why hooks never call through them (hooks.c).
 *
 * Modules loaded later are patched after each dlopen and by the watchdog's
 * rescan.  dl_iterate_phdr() lists a module as soon as ld.so maps it, before
 * it is relocated; patching it then would be undone by its relocation, and
 * making its RELRO page read-only again before ld.so wrote it would crash
 * the target.  So a module found by a rescan is first pinned with
 * dlopen(RTLD_NOLOAD), which waits for the loader lock, i.e. for any load
 * in progress to finish, and keeps the module from being unloaded while we
 * write.  The first scan of a session runs on the watchdog too, with the
 * threads running (main.c, got_first_install), so it pins like a rescan.
 *
 * All of it runs under the control lock (main.c).
 */
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

struct patch {
	uint64_t *slot;
	uint64_t old, new;
	uintptr_t base; /* module identity: load bias and program headers */
	const void *phdr;
	uint32_t ro; /* slot lies in the module's RELRO pages */
	uint32_t _pad;
};

struct mod {
	uintptr_t base;
	const void *phdr;
};

/* A module found by a scan, copied out of dl_iterate_phdr's callback */
struct cand {
	uintptr_t base;
	const ElfW(Phdr) * phdr;
	int phnum;
	int first; /* first module listed: the main executable */
	char name[480];
};

#define MAX_PATCHES 32768
#define MAX_MODS    2048
#define MAX_CANDS   1024

static struct patch *patches;
static uint32_t npatches;
static struct mod *mods;
static uint32_t nmods;
static struct cand *cands;
static uint32_t ncands;
static unsigned long long last_adds;
static unsigned int cat_mask;
static uintptr_t self_lo, self_hi;
static uintptr_t probe_ldso, probe_vdso;
static long page_size;
static uint32_t scan_idx; /* modules listed so far by the current scan */

/* ------------------------------------------------------------------ */

/* Range of a module's PT_LOAD segments */
static void load_range(uintptr_t base, const ElfW(Phdr) * ph, int n,
		       uintptr_t *lo, uintptr_t *hi)
{
	*lo = UINTPTR_MAX;
	*hi = 0;
	for (int i = 0; i < n; i++) {
		if (ph[i].p_type != PT_LOAD)
			continue;
		if (base + ph[i].p_vaddr < *lo)
			*lo = base + ph[i].p_vaddr;
		if (base + ph[i].p_vaddr + ph[i].p_memsz > *hi)
			*hi = base + ph[i].p_vaddr + ph[i].p_memsz;
	}
}

static int in_module(uintptr_t base, const ElfW(Phdr) * ph, int n, uintptr_t a)
{
	for (int i = 0; i < n; i++)
		if (ph[i].p_type == PT_LOAD && a >= base + ph[i].p_vaddr &&
		    a < base + ph[i].p_vaddr + ph[i].p_memsz)
			return 1;
	return 0;
}

static int self_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	uintptr_t me = (uintptr_t)arg;

	if (!in_module(info->dlpi_addr, info->dlpi_phdr, info->dlpi_phnum, me))
		return 0;
	load_range(info->dlpi_addr, info->dlpi_phdr, info->dlpi_phnum, &self_lo,
		   &self_hi);
	return 1;
}

/* What ma_self_init takes from its parts */
size_t ma_self_bytes(void)
{
	return ma_page_round(MAX_PATCHES * sizeof(*patches)) +
	       ma_page_round(MAX_MODS * sizeof(*mods)) +
	       ma_page_round(MAX_CANDS * sizeof(*cands));
}

int ma_self_init(struct ma_parts *parts)
{
	void *r_debug;

	if (self_hi && patches && mods && cands)
		return 0;
	page_size = sysconf(_SC_PAGESIZE);
	if (page_size <= 0)
		page_size = 4096;
	dl_iterate_phdr(self_cb, (void *)(uintptr_t)ma_self_init);
	/* ld.so is the module defining _r_debug; the vdso the one the kernel
	 * mapped at AT_SYSINFO_EHDR */
	r_debug = dlsym(RTLD_DEFAULT, "_r_debug");
	probe_ldso = (uintptr_t)r_debug;
	probe_vdso = (uintptr_t)getauxval(AT_SYSINFO_EHDR);
	/* a start that failed for want of memory may have taken some */
	if (!patches)
		patches = ma_parts_take(parts, MAX_PATCHES * sizeof(*patches));
	if (!mods)
		mods = ma_parts_take(parts, MAX_MODS * sizeof(*mods));
	if (!cands)
		cands = ma_parts_take(parts, MAX_CANDS * sizeof(*cands));
	if (!self_hi || !patches || !mods || !cands)
		return -ENOMEM;
	return 0;
}

int ma_in_payload(const void *p)
{
	return (uintptr_t)p >= self_lo && (uintptr_t)p < self_hi;
}

void ma_got_set_mask(unsigned int mask)
{
	cat_mask = mask;
}

int ma_got_installed(void)
{
	return npatches != 0;
}

uint32_t ma_got_modules(void)
{
	return __atomic_load_n(&nmods, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------------ */
/* Writing slots */

static int in_relro(uintptr_t lo, uintptr_t hi, uintptr_t a)
{
	return a >= lo && a < hi;
}

/* Store v in a slot; RELRO pages are read-only after relocation, so they
 * are opened for the one write and closed again */
static int write_slot(uint64_t *slot, uint64_t v, int ro)
{
	uintptr_t page = (uintptr_t)slot & ~(uintptr_t)(page_size - 1);

	if (ro && mprotect((void *)page, page_size, PROT_READ | PROT_WRITE))
		return -errno;
	__atomic_store_n(slot, v, __ATOMIC_RELEASE);
	if (ro)
		mprotect((void *)page, page_size, PROT_READ);
	return 0;
}

struct modinfo {
	uintptr_t base, lo, hi, relro_lo, relro_hi;
	const void *phdr;
	const ElfW(Sym) * symtab;
	const char *strtab;
	size_t strsz;
};

static int patch_relocs(const struct modinfo *m, const ElfW(Rela) * rel,
			size_t bytes, unsigned int want)
{
	int n = 0;

	if (!rel)
		return 0;
	for (size_t i = 0; i < bytes / sizeof(*rel); i++) {
		const ElfW(Rela) *r = &rel[i];
		uint32_t symi = ELF64_R_SYM(r->r_info);
		uintptr_t a = m->base + r->r_offset;
		const char *name;
		uint64_t *slot, cur;
		int h;

		if (ELF64_R_TYPE(r->r_info) != want || !symi)
			continue;
		if (m->symtab[symi].st_name >= m->strsz)
			continue;
		name = m->strtab + m->symtab[symi].st_name;
		h = ma_hook_index(name);
		if (h < 0 || !(cat_mask & (1u << ma_hook_defs[h].cat)))
			continue;
		if (a < m->lo || a + 8 > m->hi || (a & 7))
			continue;
		slot = (uint64_t *)a;
		cur = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
		if (cur == (uint64_t)(uintptr_t)ma_hook_defs[h].hook)
			continue;
		if (npatches >= MAX_PATCHES)
			return -ENOSPC;
		struct patch *p = &patches[npatches];
		int ro = in_relro(m->relro_lo, m->relro_hi, a);

		p->slot = slot;
		p->old = cur;
		p->new = (uint64_t)(uintptr_t)ma_hook_defs[h].hook;
		p->base = m->base;
		p->phdr = m->phdr;
		p->ro = (uint32_t)ro;
		if (write_slot(slot, p->new, ro) < 0)
			continue;
		/* counted once written: a fork child sees a consistent list */
		__atomic_store_n(&npatches, npatches + 1, __ATOMIC_RELEASE);
		n++;
	}
	return n;
}

/* What a module's dynamic section says about its relocations */
struct dyninfo {
	uintptr_t jmprel, rela;
	size_t pltrelsz, relasz;
	long pltrel;
};

/*
 * Read one module's dynamic section.  ld.so relocates the d_ptr entries in
 * place when .dynamic is writable (and leaves them as link-time offsets
 * otherwise, as in the vdso), so each pointer is taken as is when it lies
 * inside the module, else the load bias is added.  0, or -ENOENT when the
 * module has nothing to patch.
 */
static int parse_module(uintptr_t base, const ElfW(Phdr) * ph, int phnum,
			struct modinfo *m, struct dyninfo *di)
{
	const ElfW(Dyn) *dyn = NULL;
	size_t soname = (size_t)-1;

	memset(m, 0, sizeof(*m));
	memset(di, 0, sizeof(*di));
	m->base = base;
	m->phdr = ph;
	di->pltrel = DT_RELA;
	load_range(base, ph, phnum, &m->lo, &m->hi);
	for (int i = 0; i < phnum; i++) {
		if (ph[i].p_type == PT_DYNAMIC)
			dyn = (const void *)(base + ph[i].p_vaddr);
		if (ph[i].p_type == PT_GNU_RELRO) {
			uintptr_t s = base + ph[i].p_vaddr;
			uintptr_t e = s + ph[i].p_memsz;

			/* what ld.so protects: whole pages only */
			m->relro_lo = s & ~(uintptr_t)(page_size - 1);
			m->relro_hi = e & ~(uintptr_t)(page_size - 1);
		}
	}
	if (!dyn)
		return -ENOENT;
#define FIX(v)                                                                 \
	((uintptr_t)(v) >= m->lo && (uintptr_t)(v) < m->hi                     \
		 ? (uintptr_t)(v)                                              \
		 : (uintptr_t)(v) + base)
	for (const ElfW(Dyn) *d = dyn; d->d_tag != DT_NULL; d++) {
		switch (d->d_tag) {
		case DT_SYMTAB:
			m->symtab = (const void *)FIX(d->d_un.d_ptr);
			break;
		case DT_STRTAB:
			m->strtab = (const void *)FIX(d->d_un.d_ptr);
			break;
		case DT_STRSZ:
			m->strsz = d->d_un.d_val;
			break;
		case DT_SONAME:
			soname = d->d_un.d_val;
			break;
		case DT_JMPREL:
			di->jmprel = FIX(d->d_un.d_ptr);
			break;
		case DT_PLTRELSZ:
			di->pltrelsz = d->d_un.d_val;
			break;
		case DT_PLTREL:
			di->pltrel = (long)d->d_un.d_val;
			break;
		case DT_RELA:
			di->rela = FIX(d->d_un.d_ptr);
			break;
		case DT_RELASZ:
			di->relasz = d->d_un.d_val;
			break;
		}
	}
#undef FIX
	if (!m->symtab || !m->strtab || !m->strsz)
		return -ENOENT;
	/* another memattach build's payload, loaded beside this one
	 * (docs/architecture.md, "Payloads of several builds"): its calls
	 * are a profiler's, not the program's, as this payload's own are */
	if (soname < m->strsz &&
	    !strncmp(m->strtab + soname, MA_PAYLOAD_SONAME, m->strsz - soname))
		return -ENOENT;
	if (di->pltrel != DT_RELA)
		di->jmprel = 0;
	return 0;
}

/* Patch one module; the number of slots patched or -errno */
static int patch_module(uintptr_t base, const ElfW(Phdr) * ph, int phnum)
{
	struct modinfo m;
	struct dyninfo di;
	int n, total;

	if (parse_module(base, ph, phnum, &m, &di) < 0)
		return 0;
	total = patch_relocs(&m, (const void *)di.jmprel, di.pltrelsz,
			     R_X86_64_JUMP_SLOT);
	if (total < 0)
		return total;
	n = patch_relocs(&m, (const void *)di.rela, di.relasz,
			 R_X86_64_GLOB_DAT);
	if (n < 0)
		return n;
	return total + n;
}

/* ------------------------------------------------------------------ */
/* What the main executable's own GOT says (hazard 7 with a preload) */

struct exe_find {
	const char *name;
	uintptr_t value;
};

static uintptr_t find_slot(const struct modinfo *m, const ElfW(Rela) * rel,
			   size_t bytes, unsigned int want, const char *name)
{
	for (size_t i = 0; rel && i < bytes / sizeof(*rel); i++) {
		uint32_t symi = ELF64_R_SYM(rel[i].r_info);
		uintptr_t a = m->base + rel[i].r_offset;

		if (ELF64_R_TYPE(rel[i].r_info) != want || !symi ||
		    m->symtab[symi].st_name >= m->strsz ||
		    strcmp(m->strtab + m->symtab[symi].st_name, name) != 0 ||
		    a < m->lo || a + 8 > m->hi || (a & 7))
			continue;
		return __atomic_load_n((const uintptr_t *)a, __ATOMIC_ACQUIRE);
	}
	return 0;
}

static int exe_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct exe_find *f = arg;
	struct modinfo m;
	struct dyninfo di;
	uintptr_t v;

	/* the first module listed is the main executable */
	if (parse_module(info->dlpi_addr, info->dlpi_phdr, info->dlpi_phnum, &m,
			 &di) < 0)
		return 1;
	v = find_slot(&m, (const void *)di.jmprel, di.pltrelsz,
		      R_X86_64_JUMP_SLOT, f->name);
	if (!v)
		v = find_slot(&m, (const void *)di.rela, di.relasz,
			      R_X86_64_GLOB_DAT, f->name);
	/* a value inside the executable is its own lazy-binding stub: not
	 * resolved yet, so it says nothing */
	if (v && (v < m.lo || v >= m.hi))
		f->value = v;
	return 1;
}

void *ma_exe_got_target(const char *name)
{
	struct exe_find f = { name, 0 };

	if (!page_size)
		page_size = sysconf(_SC_PAGESIZE);
	dl_iterate_phdr(exe_cb, &f);
	return (void *)f.value;
}

/* ------------------------------------------------------------------ */
/* Scanning */

static int skip_module(struct dl_phdr_info *info)
{
	const char *name = info->dlpi_name ? info->dlpi_name : "";

	if (in_module(info->dlpi_addr, info->dlpi_phdr, info->dlpi_phnum,
		      (uintptr_t)ma_self_init))
		return 1;
	if (probe_ldso && in_module(info->dlpi_addr, info->dlpi_phdr,
				    info->dlpi_phnum, probe_ldso))
		return 1;
	if (probe_vdso && in_module(info->dlpi_addr, info->dlpi_phdr,
				    info->dlpi_phnum, probe_vdso))
		return 1;
	return strstr(name, "linux-vdso") || strstr(name, "/ld-linux");
}

static int known(uintptr_t base, const void *phdr)
{
	for (uint32_t i = 0; i < nmods; i++)
		if (mods[i].base == base && mods[i].phdr == phdr)
			return (int)i;
	return -1;
}

/* Collect modules not patched yet; mark the known ones seen */
static int collect_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	uint8_t *seen = arg;
	int k;

	last_adds = info->dlpi_adds;
	scan_idx++;
	if (skip_module(info))
		return 0;
	k = known(info->dlpi_addr, info->dlpi_phdr);
	if (k >= 0) {
		seen[k] = 1;
		return 0;
	}
	if (ncands >= MAX_CANDS)
		return 0;
	struct cand *c = &cands[ncands++];
	size_t len = strlen(info->dlpi_name ? info->dlpi_name : "");

	c->base = info->dlpi_addr;
	c->phdr = info->dlpi_phdr;
	c->phnum = info->dlpi_phnum;
	c->first = scan_idx == 1;
	if (len >= sizeof(c->name))
		len = 0; /* cannot pin it by name: skipped when pinning */
	memcpy(c->name, info->dlpi_name ? info->dlpi_name : "", len);
	c->name[len] = '\0';
	return 0;
}

static int remember(uintptr_t base, const void *phdr)
{
	if (nmods >= MAX_MODS)
		return -ENOSPC;
	mods[nmods].base = base;
	mods[nmods].phdr = phdr;
	__atomic_store_n(&nmods, nmods + 1, __ATOMIC_RELEASE);
	return 0;
}

/* Holds the module of candidate c loaded while we patch it; NULL when it is
 * gone or is not the same module any more */
static void *pin(const struct cand *c)
{
	struct link_map *lm = NULL;
	void *h;

	if (!c->name[0])
		return NULL;
	h = ma_real.dlopen(c->name, RTLD_NOLOAD | RTLD_LAZY);
	if (!h) {
		dlerror(); /* not the application's error to see */
		return NULL;
	}
	if (dlinfo(h, RTLD_DI_LINKMAP, &lm) != 0 || !lm ||
	    (uintptr_t)lm->l_addr != c->base) {
		dlclose(h);
		return NULL;
	}
	return h;
}

int ma_got_install(int pin_modules)
{
	static uint8_t seen[MAX_MODS];
	static unsigned int retries;
	int total = 0, err = 0, unpinned = 0;

	memset(seen, 0, sizeof(seen));
	ncands = 0;
	scan_idx = 0;
	dl_iterate_phdr(collect_cb, seen);
	/* forget modules that were unloaded: their addresses may come back */
	for (uint32_t i = 0; i < nmods;) {
		if (seen[i]) {
			i++;
			continue;
		}
		mods[i] = mods[nmods - 1];
		seen[i] = seen[nmods - 1];
		nmods--;
	}
	for (uint32_t i = 0; i < ncands; i++) {
		struct cand *c = &cands[i];
		void *h = NULL;
		int n;

		/* the main executable (first, nameless) can neither be
		 * unloaded nor be half loaded: it needs no pin */
		if (pin_modules && !c->first) {
			h = pin(c);
			if (!h) {
				unpinned++;
				continue;
			}
		}
		n = patch_module(c->base, c->phdr, c->phnum);
		if (h)
			dlclose(h);
		if (n < 0) {
			err = n;
			break;
		}
		total += n;
		if (remember(c->base, c->phdr) < 0) {
			err = -ENOSPC;
			break;
		}
	}
	/* a module that could not be pinned (still loading, or going) is
	 * tried again at the watchdog's next ticks, a bounded number of
	 * times, even though no other module was added */
	if (unpinned && retries++ < 20)
		last_adds = 0;
	else if (!unpinned)
		retries = 0;
	return err < 0 ? err : total;
}

static int adds_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	*(unsigned long long *)arg = info->dlpi_adds;
	return 1;
}

int ma_got_changed(void)
{
	unsigned long long adds = 0;

	dl_iterate_phdr(adds_cb, &adds);
	return adds != __atomic_load_n(&last_adds, __ATOMIC_RELAXED);
}

void ma_got_rescan(void)
{
	struct ma_session *s = ma_sess;
	unsigned long long adds = 0;

	if (!s ||
	    __atomic_load_n(&s->phase, __ATOMIC_ACQUIRE) != MA_PHASE_TRACKING ||
	    !ma_on())
		return;
	dl_iterate_phdr(adds_cb, &adds);
	if (adds == last_adds)
		return;
	ma_got_install(1);
}

/* ------------------------------------------------------------------ */
/* Restoring */

static int list_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	if (ncands >= MAX_CANDS)
		return 1;
	cands[ncands].base = info->dlpi_addr;
	cands[ncands].phdr = info->dlpi_phdr;
	ncands++;
	return 0;
}

int ma_got_restore(void)
{
	int n = 0;

	ncands = 0;
	dl_iterate_phdr(list_cb, NULL);
	/* newest first: a slot patched twice gets its oldest value last */
	for (uint32_t i = npatches; i-- > 0;) {
		struct patch *p = &patches[i];
		int present = 0;

		/* only modules still loaded, slots still holding our hook */
		for (uint32_t j = 0; j < ncands && !present; j++)
			present = cands[j].base == p->base &&
				  (const void *)cands[j].phdr == p->phdr;
		if (!present ||
		    __atomic_load_n(p->slot, __ATOMIC_ACQUIRE) != p->new)
			continue;
		if (write_slot(p->slot, p->old, (int)p->ro) == 0)
			n++;
	}
	__atomic_store_n(&npatches, 0, __ATOMIC_RELEASE);
	nmods = 0;
	last_adds = 0;
	return n;
}
