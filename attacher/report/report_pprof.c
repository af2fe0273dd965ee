/* SPDX-License-Identifier: MIT */
/*
 * -f pprof: a gzip-compressed profile.proto (the format of go tool pprof,
 * Pyroscope, Grafana), encoded by protoc-c's code generated at build time
 * from Debian's profile.proto.
 *
 * Sample types, as Go heap profiles name them so that tools pick the
 * right defaults: alloc_objects/count, alloc_space/bytes,
 * inuse_objects/count, inuse_space/bytes.  "inuse" is the live view (the
 * peak figures with --view peak), "alloc" the total view.  With --view
 * temporary the first two are temporary_objects/temporary_space, never
 * alloc_*: Pyroscope and Parca read alloc_* as every allocation.  A
 * comment in the profile says which view each pair is, and another one
 * that the capture was cut short, when it was.
 *
 * One mapping, the Python executable, with functions, file names and
 * lines resolved (else pprof says "Main binary filename not available");
 * one location per frame tree node (one line: function and line), one
 * function per (name, file, first line); one sample per stack and thread
 * with a figure, its location ids innermost first as pprof expects, and
 * labels as Go's heap profiles have them: "thread" (the thread's name),
 * "tid", and "bytes", the mean size of the sample's blocks.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "errors.h"
#include "profile.pb-c.h"
#include "report.h"
#include "report_util.h"

typedef Perftools__Profiles__Profile Profile;
typedef Perftools__Profiles__ValueType ValueType;
typedef Perftools__Profiles__Sample Sample;
typedef Perftools__Profiles__Location Location;
typedef Perftools__Profiles__Line Line;
typedef Perftools__Profiles__Function Function;
typedef Perftools__Profiles__Label Label;
typedef Perftools__Profiles__Mapping Mapping;

struct fnkey {
	const char *name, *file;
	int first;
	uint64_t id; /* 0 = empty */
};

static uint64_t fn_hash(const struct ma_rnode *n)
{
	uint64_t h = (uint64_t)(uintptr_t)n->function * 0x9e3779b97f4a7c15ull;

	h ^= (uint64_t)(uintptr_t)n->file * 0xff51afd7ed558ccdull;
	return h ^ (uint64_t)(uint32_t)n->firstlineno * 0xc4ceb9fe1a85ec53ull;
}

/* Whether a sample has a figure in the two views pprof shows */
static bool fig_any(const struct ma_rsample *a, enum ma_rview va,
		    enum ma_rview vi)
{
	return a->fig[va].count || a->fig[vi].count || a->fig[va].bytes ||
	       a->fig[vi].bytes;
}

/* gzip buf to f */
static int gzip_write(const uint8_t *buf, size_t len, FILE *f)
{
	z_stream z = { 0 };
	uint8_t out[1 << 16];
	int zr;

	if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
	    Z_OK)
		return ma_err(-ENOMEM, "zlib: cannot start deflate");
	z.next_in = (uint8_t *)buf;
	z.avail_in = (uInt)len; /* < 4 GiB: checked by the caller */
	do {
		z.next_out = out;
		z.avail_out = sizeof(out);
		zr = deflate(&z, Z_FINISH);
		if (zr == Z_STREAM_ERROR) {
			deflateEnd(&z);
			return ma_err(-EIO, "zlib: deflate failed");
		}
		if (fwrite(out, 1, sizeof(out) - z.avail_out, f) !=
		    sizeof(out) - z.avail_out) {
			deflateEnd(&z);
			return ma_err(-EIO, "write error");
		}
	} while (zr != Z_STREAM_END);
	deflateEnd(&z);
	return 0;
}

int ma_report_pprof(const struct ma_report *r, FILE *f)
{
	enum ma_rview v = r->opts.view;
	enum ma_rview va = v == MA_RV_TEMP ? MA_RV_TEMP : MA_RV_TOTAL;
	enum ma_rview vi = v == MA_RV_PEAK ? MA_RV_PEAK : MA_RV_LIVE;
	Profile prof = PERFTOOLS__PROFILES__PROFILE__INIT;
	ValueType vt[4], *vtp[4],
		period = PERFTOOLS__PROFILES__VALUE_TYPE__INIT;
	static const char *const vt_names[4][2] = {
		{ "alloc_objects", "count" },
		{ "alloc_space", "bytes" },
		{ "inuse_objects", "count" },
		{ "inuse_space", "bytes" }
	};
	static const char *const vt_temp[2] = { "temporary_objects",
						"temporary_space" };
	Mapping map = PERFTOOLS__PROFILES__MAPPING__INIT, *mapp = &map;
	size_t nsmp_all = r->nsamples ? r->nsamples : 1;
	Label *lab = NULL, **labp = NULL;
	int64_t k_thread, k_tid, k_bytes, u_bytes;
	struct ma_strtab st = { 0 };
	size_t nloc = r->nnodes ? r->nnodes - 1 : 0, nsamp = 0, nfn = 0;
	Location *loc = calloc(nloc + 1, sizeof(*loc));
	Location **locp = calloc(nloc + 1, sizeof(*locp));
	Line *line = calloc(nloc + 1, sizeof(*line));
	Line **linep = calloc(nloc + 1, sizeof(*linep));
	Function *fn = calloc(nloc + 1, sizeof(*fn));
	Function **fnp = calloc(nloc + 1, sizeof(*fnp));
	Sample *smp = calloc(nsmp_all, sizeof(*smp));
	Sample **smpp = calloc(nsmp_all, sizeof(*smpp));
	int64_t *vals = calloc(nsmp_all * 4, sizeof(*vals));
	uint64_t *ids = NULL;
	size_t nids = 0, fcap = 64;
	struct fnkey *fh = NULL;
	int64_t comment[4] = { 0 };
	char note[256], trunc[640], est[160];
	uint64_t mean = ma_report_estimates(r, est, sizeof(est));
	size_t ncomment;
	uint8_t *buf = NULL;
	size_t len;
	int ret = 0;

	while (fcap < nloc * 2)
		fcap *= 2;
	fh = calloc(fcap, sizeof(*fh));
	if (!loc || !locp || !line || !linep || !fn || !fnp || !smp || !smpp ||
	    !vals || !fh || ma_strtab_idx(&st, "") != 0)
		goto nomem;

	lab = calloc(nsmp_all * 3, sizeof(*lab));
	labp = calloc(nsmp_all * 3, sizeof(*labp));
	if (!lab || !labp)
		goto nomem;
	for (int i = 0; i < 4; i++) {
		int64_t a = ma_strtab_idx(&st, va == MA_RV_TEMP && i < 2
						       ? vt_temp[i]
						       : vt_names[i][0]);
		int64_t b = ma_strtab_idx(&st, vt_names[i][1]);

		if (a < 0 || b < 0)
			goto nomem;
		perftools__profiles__value_type__init(&vt[i]);
		vt[i].type = a;
		vt[i].unit = b;
		vtp[i] = &vt[i];
	}
	prof.n_sample_type = 4;
	prof.sample_type = vtp;
	period.type = ma_strtab_idx(&st, "space");
	period.unit = vt[1].unit;
	prof.period_type = &period;
	/* as Go's heap profiles: the sampling period (the values are
	 * already the estimates) */
	prof.period = mean ? (int64_t)mean : 1;
	prof.default_sample_type =
		v == MA_RV_LIVE || v == MA_RV_PEAK ? vt[3].type : vt[1].type;

	/* The one mapping: the executable, everything already resolved */
	map.id = 1;
	map.filename = ma_strtab_idx(
		&st, r->meta && r->meta->exe && r->meta->exe[0] ? r->meta->exe
								: "python");
	map.has_functions = 1;
	map.has_filenames = 1;
	map.has_line_numbers = 1;
	prof.n_mapping = 1;
	prof.mapping = &mapp;
	k_thread = ma_strtab_idx(&st, "thread");
	k_tid = ma_strtab_idx(&st, "tid");
	k_bytes = ma_strtab_idx(&st, "bytes");
	u_bytes = vt[1].unit;
	if (map.filename < 0 || k_thread < 0 || k_tid < 0 || k_bytes < 0)
		goto nomem;

	/* Functions and locations: location id = tree node index */
	for (size_t i = 1; i < r->nnodes; i++) {
		const struct ma_rnode *n = &r->nodes[i];
		Location *l = &loc[i - 1];
		Line *ln = &line[i - 1];
		size_t j;

		for (j = fn_hash(n) & (fcap - 1); fh[j].id;
		     j = (j + 1) & (fcap - 1))
			if (fh[j].name == n->function &&
			    fh[j].file == n->file &&
			    fh[j].first == n->firstlineno)
				break;
		if (!fh[j].id) {
			Function *fu = &fn[nfn];
			int64_t a = ma_strtab_idx(&st, n->function);
			int64_t b = ma_strtab_idx(&st, n->file);

			if (a < 0 || b < 0)
				goto nomem;
			perftools__profiles__function__init(fu);
			fu->id = nfn + 1;
			fu->name = a;
			/* No system name: Python names are not mangled, and
			 * pprof "demangles" a name equal to it, which makes
			 * "<module>" (a template argument list to it) empty */
			fu->system_name = 0;
			fu->filename = b;
			fu->start_line = n->firstlineno;
			fnp[nfn++] = fu;
			fh[j] = (struct fnkey){ n->function, n->file,
						n->firstlineno, fu->id };
		}
		perftools__profiles__line__init(ln);
		ln->function_id = fh[j].id;
		ln->line = n->line >= 0 ? n->line : 0;
		linep[i - 1] = ln;
		perftools__profiles__location__init(l);
		l->id = i;
		l->mapping_id = 1;
		l->n_line = 1;
		l->line = &linep[i - 1];
		locp[i - 1] = l;
	}
	prof.n_location = nloc;
	prof.location = locp;
	prof.n_function = nfn;
	prof.function = fnp;

	/* Samples, one per (stack, thread): location ids of every stack, in
	 * one array */
	for (size_t i = 0; i < r->nsamples; i++) {
		const struct ma_rsample *a = &r->samples[i];
		const struct ma_rnode *n = &r->nodes[a->node];

		if (n->match && fig_any(a, va, vi))
			nids += n->depth;
	}
	ids = malloc((nids + 1) * sizeof(*ids));
	if (!ids)
		goto nomem;
	nids = 0;
	for (size_t i = 0; i < r->nsamples; i++) {
		const struct ma_rsample *a = &r->samples[i];
		const struct ma_rnode *n = &r->nodes[a->node];
		const struct ma_rthread *t = &r->threads[a->thread];
		Sample *s = &smp[nsamp];
		int64_t *val = &vals[nsamp * 4];
		Label *lb = &lab[nsamp * 3];
		const struct ma_account_fig *mf;
		size_t d = 0;

		if (!n->match || !fig_any(a, va, vi))
			continue;
		perftools__profiles__sample__init(s);
		s->location_id = &ids[nids];
		for (uint32_t k = a->node; k && d < n->depth;
		     k = r->nodes[k].parent)
			ids[nids + d++] = k;
		nids += d;
		s->n_location_id = d;
		val[0] = (int64_t)a->fig[va].count;
		val[1] = (int64_t)a->fig[va].bytes;
		val[2] = (int64_t)a->fig[vi].count;
		val[3] = (int64_t)a->fig[vi].bytes;
		s->n_value = 4;
		s->value = val;
		for (int k = 0; k < 3; k++) {
			perftools__profiles__label__init(&lb[k]);
			labp[nsamp * 3 + (size_t)k] = &lb[k];
		}
		lb[0].key = k_thread;
		lb[0].str = ma_strtab_idx(&st, t->name);
		if (lb[0].str < 0)
			goto nomem;
		lb[1].key = k_tid;
		lb[1].num = t->tid;
		/* Go's heap profiles give each sample its object size; ours
		 * are many blocks: their mean size */
		mf = a->fig[va].count ? &a->fig[va] : &a->fig[vi];
		lb[2].key = k_bytes;
		lb[2].num = mf->count ? (int64_t)(mf->bytes / mf->count) : 0;
		lb[2].num_unit = u_bytes;
		/* without figures per thread, every sample is thread 0's:
		 * no thread labels then */
		s->n_label = r->opts.by_thread ? 3 : 1;
		s->label = &labp[nsamp * 3 + (r->opts.by_thread ? 0 : 2)];
		smpp[nsamp++] = s;
	}
	prof.n_sample = nsamp;
	prof.sample = smpp;

	if (r->meta)
		prof.time_nanos = (int64_t)r->meta->start_wall_ns;
	prof.duration_nanos = (int64_t)(r->trailer ? r->trailer->duration_ns
						   : r->t.last_t_ns);
	if (va == MA_RV_TEMP)
		snprintf(note, sizeof(note),
			 "memattach %s: inuse_* = %s view, temporary_* = "
			 "temporary view (window %u)",
			 MA_VERSION, ma_rview_name(vi), r->opts.window);
	else
		snprintf(note, sizeof(note),
			 "memattach %s: inuse_* = %s view, alloc_* = %s view",
			 MA_VERSION, ma_rview_name(vi), ma_rview_name(va));
	comment[0] = ma_strtab_idx(&st, note);
	comment[1] = ma_strtab_idx(
		&st, r->meta && r->meta->cmdline ? r->meta->cmdline : "");
	if (!r->trailer) {
		snprintf(trunc, sizeof(trunc), "TRUNCATED: %s",
			 r->warning ? r->warning : "the capture was cut short");
		comment[2] = ma_strtab_idx(&st, trunc);
	}
	ncomment = r->trailer ? 2 : 3;
	if (mean)
		comment[ncomment++] = ma_strtab_idx(&st, est);
	for (size_t i = 0; i < ncomment; i++)
		if (comment[i] < 0)
			goto nomem;
	if (period.type < 0)
		goto nomem;
	prof.n_comment = ncomment;
	prof.comment = comment;
	prof.n_string_table = st.n;
	prof.string_table = (char **)st.s;

	len = perftools__profiles__profile__get_packed_size(&prof);
	if (len >= (1ull << 32)) {
		ret = ma_err(-EFBIG,
			     "pprof profile too large (%zu "
			     "bytes)",
			     len);
		goto out;
	}
	buf = malloc(len ? len : 1);
	if (!buf)
		goto nomem;
	perftools__profiles__profile__pack(&prof, buf);
	ret = gzip_write(buf, len, f);
	goto out;
nomem:
	ret = ma_err(-ENOMEM, "out of memory");
out:
	free(buf);
	free(ids);
	free(fh);
	free(loc);
	free(locp);
	free(line);
	free(linep);
	free(fn);
	free(fnp);
	free(smp);
	free(smpp);
	free(vals);
	free(lab);
	free(labp);
	ma_strtab_free(&st);
	return ret;
}
