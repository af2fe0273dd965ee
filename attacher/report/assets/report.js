/* memattach report: flame graph, view switcher, memory plot, top table.
 * Written for memattach; no libraries, no network.  The data (element
 * #ma-data) is a frame tree in columns: parent, function, file, line of
 * each node (parents before children) and, per node, the bytes and count
 * of allocations whose innermost frame it is, for the four views. */
(function () {
  'use strict';
  var errors = [];
  function fail(msg) {
    errors.push(msg);
    var e = document.getElementById('ma-errors');
    if (e) e.textContent = errors.join('\n');
  }
  window.addEventListener('error', function (ev) {
    fail('error: ' + ev.message + ' (line ' + ev.lineno + ')');
  });

  var D = JSON.parse(document.getElementById('ma-data').textContent);
  var VIEWS = ['live', 'peak', 'total', 'temporary'];
  var DESC = {
    live: 'allocated while tracked and still live at the end',
    peak: 'live at the moment tracked memory was highest',
    total: 'everything allocated while tracked',
    temporary: 'freed by the allocating thread within ' + D.window +
      ' further allocation' + (D.window === 1 ? '' : 's')
  };
  var S = D.strings, P = D.nodes.p, F = D.nodes.f, FI = D.nodes.s,
    L = D.nodes.l, n = P.length;
  var VIEW0 = Math.max(0, VIEWS.indexOf(D.view)), view = VIEW0;
  var ROW = 18, i, v, k;

  /* per (node, thread) figures: node column as differences */
  var SM = D.samples, SN = new Int32Array(SM.n.length), ST = SM.t, SV = SM.v;
  for (k = 0, i = 0; k < SN.length; k++) { i += SM.n[k]; SN[k] = i; }
  /* the timeline: spans (node, thread, alloc bucket, free bucket, bytes,
   * count), bucket k between TB[k] and TB[k + 1] */
  var TL = D.timeline, TB = TL.b, NB = Math.max(0, TB.length - 1), TN = new Int32Array(TL.n.length);
  for (k = 0, i = 0; k < TN.length; k++) { i += TL.n[k]; TN[k] = i; }
  var thread = -1, range = null; /* range: [c1, c2] bucket bounds */

  /* ---- helpers ---- */
  function bytes(x) {
    var u = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'], i = -1;
    if (x < 1024) return Math.round(x) + ' B';
    while (x >= 1024 && i < u.length - 1) { x /= 1024; i++; }
    return (x < 9.995 ? x.toFixed(2) : x < 99.95 ? x.toFixed(1) : x.toFixed(0)) + ' ' + u[i];
  }
  function count(x) {
    var u = ['k', 'M', 'G', 'T'], i = -1;
    if (x < 1000) return String(x);
    while (x >= 1000 && i < u.length - 1) { x /= 1000; i++; }
    return (x < 9.995 ? x.toFixed(2) : x < 99.95 ? x.toFixed(1) : x.toFixed(0)) + ' ' + u[i];
  }
  function pct(a, b) { return b > 0 ? (100 * a / b).toFixed(1) + '%' : '0%'; }
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }
  function base(path) { var i = path.lastIndexOf('/'); return i < 0 ? path : path.slice(i + 1); }
  function fname(i) { return i ? S[F[i]] : 'all'; }
  function where(i, full) {
    if (!i) return '';
    var f = S[FI[i]];
    if (!f) return '';
    return (full ? f : base(f)) + (L[i] >= 0 ? ':' + L[i] : '');
  }
  function label(i) { var w = where(i, false); return fname(i) + (w ? ' (' + w + ')' : ''); }

  /* ---- raw figures: per node, for the view (or the range) and thread ---- */
  function rawSelf(vw, th, rg) {
    var b = new Float64Array(n), c = new Float64Array(n), k;
    if (rg) {
      for (k = 0; k < TN.length; k++) {
        if (th >= 0 && TL.bythread && TL.t[k] !== th) continue;
        if (TL.a[k] >= rg[0] && TL.a[k] < rg[1] && TL.f[k] >= rg[1]) {
          b[TN[k]] += TL.y[k]; c[TN[k]] += TL.c[k];
        }
      }
    } else {
      for (k = 0; k < SN.length; k++) {
        if (th >= 0 && ST[k] !== th) continue;
        b[SN[k]] += SV[k * 8 + vw * 2]; c[SN[k]] += SV[k * 8 + vw * 2 + 1];
      }
    }
    return { b: b, c: c };
  }
  /* a thread's (or all threads') tracked live bytes at each bucket bound */
  function liveAtBounds(th) {
    var d = new Float64Array(NB + 2), out = new Float64Array(NB + 1), k, acc = 0;
    for (k = 0; k < TN.length; k++) {
      if (th >= 0 && TL.t[k] !== th) continue;
      d[TL.a[k] + 1] += TL.y[k]; d[TL.f[k] + 1] -= TL.y[k];
    }
    for (k = 0; k <= NB; k++) { acc += d[k]; out[k] = acc; }
    return out; /* out[c]: ab < c <= fb */
  }

  /* ---- the displayed tree: frames hidden, recursion folded ---- */
  var fold = true, hide = true, icicle = true;
  var IMPORT = /^<frozen importlib\._bootstrap(_external)?>$|(^|\/)importlib\/(_bootstrap|_bootstrap_external|__init__)\.py$/;
  var THREADING = /(^|\/)threading\.py$/;
  function hidden(i) {
    /* 3.11+ names methods by their qualified name: Thread._bootstrap */
    var file = S[FI[i]], fn = S[F[i]].replace(/^.*\./, '');
    if (IMPORT.test(file)) return true;
    return THREADING.test(file) && (fn === '_bootstrap' || fn === '_bootstrap_inner' || fn === 'run');
  }
  /* display node k: its raw representative rep[k] (label), parent dp[k],
   * ×times; dmap[i]: the display node of raw node i */
  var dmap, rep, dp, times, dkids, dn, ddepth;
  function buildDisplay() {
    var key = {}, run = new Int32Array(n), i;
    dmap = new Int32Array(n); rep = [0]; dp = [0]; times = [1]; dkids = [[]];
    for (i = 1; i < n; i++) {
      var p = dmap[P[i]];
      if (hide && hidden(i)) { dmap[i] = p; run[i] = run[P[i]]; continue; }
      if (fold && p && F[rep[p]] === F[i] && FI[rep[p]] === FI[i]) {
        dmap[i] = p; run[i] = run[P[i]] + 1;
        if (run[i] > times[p]) times[p] = run[i];
        continue;
      }
      var kk = p + ':' + F[i] + ':' + FI[i] + ':' + L[i], d = key[kk];
      if (d === undefined) {
        d = key[kk] = rep.length;
        rep.push(i); dp.push(p); times.push(1); dkids.push([]); dkids[p].push(d);
      }
      dmap[i] = d; run[i] = 1;
    }
    dn = rep.length;
    ddepth = new Int32Array(dn);
    for (i = 1; i < dn; i++) ddepth[i] = ddepth[dp[i]] + 1;
    for (i = 0; i < dn; i++) dkids[i].sort(function (a, b) {
      var x = label(rep[a]), y = label(rep[b]); return x < y ? -1 : x > y ? 1 : a - b;
    });
    zoom = 0;
  }
  function dlabel(k) { return k ? label(rep[k]) + (times[k] > 1 ? ' \u00d7' + times[k] : '') : 'all'; }

  /* current figures: raw self (table), display self and inclusive */
  var cur, incB, incC, selfB, allViews;
  function compute() {
    cur = rawSelf(view, thread, range);
    selfB = new Float64Array(dn); incB = new Float64Array(dn); incC = new Float64Array(dn);
    for (var i = 0; i < n; i++) {
      var d = dmap[i];
      selfB[d] += cur.b[i]; incB[d] += cur.b[i]; incC[d] += cur.c[i];
    }
    for (var k = dn - 1; k > 0; k--) { incB[dp[k]] += incB[k]; incC[dp[k]] += incC[k]; }
    allViews = null;
  }
  /* every view's inclusive bytes (hover), computed when first asked */
  function otherViews() {
    if (allViews) return allViews;
    allViews = [];
    for (var vw = 0; vw < 4; vw++) {
      var r = rawSelf(vw, thread, null), b = new Float64Array(dn), k;
      for (k = 0; k < n; k++) b[dmap[k]] += r.b[k];
      for (k = dn - 1; k > 0; k--) b[dp[k]] += b[k];
      allViews.push(b);
    }
    return allViews;
  }
  function what() {
    if (range) return 'range ' + secs(TB[range[0]]) + ' \u2013 ' + secs(TB[range[1]]);
    return VIEWS[view];
  }
  function secs(ns) { return (ns / 1e9).toFixed(ns < 1e10 ? 2 : 1) + ' s'; }

  /* ---- header ---- */
  var M = D.meta, T = D.totals;
  document.title = 'memattach: ' + base(M.file) + ' (pid ' + M.pid + ')';
  document.getElementById('ma-title').textContent = 'memattach report: ' + base(M.file);
  document.getElementById('ma-meta').textContent = 'pid ' + M.pid + ', Python ' + (M.python || '?') +
    ', ' + (M.duration_ns / 1e9).toFixed(1) + ' s tracked, ' +
    (M.truncated ? 'TRUNCATED capture' : M.complete ? 'complete' : 'incomplete') +
    (M.cmdline ? ' \u2014 ' + M.cmdline : '');
  var sm = document.getElementById('ma-summary');
  function put(label, value) {
    sm.appendChild(document.createTextNode(label));
    sm.appendChild(el('b', value));
  }
  put('Allocated ', bytes(T.allocated_bytes));
  put(' in ', count(T.allocations) + ' allocations');
  put('; still live ', bytes(T.live_bytes));
  var U = D.unknown || {};
  put('; peak ', U.peak ? 'not known' : bytes(D.peak.bytes));
  sm.appendChild(document.createTextNode(D.peak.when && !U.peak ? ' ' + D.peak.when : ''));
  put('; temporary ', U.temporary ? 'not known (sampled)' : bytes(T.temporary_bytes));
  if (!U.temporary) sm.appendChild(document.createTextNode(' (window ' + D.window + ')'));
  if (D.thread) sm.appendChild(document.createTextNode('; only thread ' + D.thread));
  if (D.filter) sm.appendChild(document.createTextNode('; only stacks matching \u201c' + D.filter + '\u201d'));

  var notes = document.getElementById('ma-notes');
  if (M.estimates) notes.appendChild(el('p', M.estimates + '.', 'warn'));
  if (D.unknown_frees) notes.appendChild(el('p', count(D.unknown_frees) +
    (D.unknown_frees === 1 ? ' free of memory allocated before the attach (not tracked) is' :
     ' frees of memory allocated before the attach (not tracked) are') + ' not in these figures' +
    (D.unknown_whole ? ' (whole capture)' : '') + '.'));
  if (T.lost_records) notes.appendChild(el('p', 'Warning: ' + T.lost_records +
    ' records were lost (ring full): the figures are incomplete.', 'warn'));
  if (M.truncated) notes.appendChild(el('p', 'Warning: ' + (M.warning || 'the capture is truncated') + '.', 'warn'));
  if (D.aggregated) notes.appendChild(el('p', 'Aggregated capture: a time range matches each stack\u2019s frees ' +
    'to its latest allocations first (the capture has sums per second, not each block).'));
  if (!TL.bythread) notes.appendChild(el('p', 'A capture this big has its time ranges for all threads together ' +
    '(the page stays small): the thread filter applies to the views, not to a range or the plot.'));
  if (TL.approx) notes.appendChild(el('p', 'More mmap regions than the timeline follows: some are taken as never unmapped in time ranges.'));
  notes.appendChild(el('p', 'memattach ' + D.version + ' \u2014 ' + count(T.events) + ' events, ' +
    count(n - 1) + ' distinct frames in the tree.'));

  /* ---- view switcher, thread chooser, toggles ---- */
  var vbox = document.getElementById('ma-views');
  VIEWS.forEach(function (name, k) {
    var btn = el('button', name);
    btn.type = 'button';
    btn.title = DESC[name];
    btn.setAttribute('role', 'tab');
    btn.addEventListener('click', function () { setView(k); });
    vbox.appendChild(btn);
  });
  var tsel = document.getElementById('ma-thread'), hasFig = {};
  for (k = 0; k < ST.length; k++) hasFig[ST[k]] = true;
  D.threads.forEach(function (t, k) {
    if (!hasFig[k]) return;
    var o = el('option', (t[1] || '?') + (t[0] ? ' (' + t[0] + ')' : ''));
    o.value = String(k);
    tsel.appendChild(o);
  });
  tsel.addEventListener('change', function () { setThread(parseInt(tsel.value, 10)); });
  function threadName(th) { return th < 0 ? 'all threads' : D.threads[th][1] + ' (' + D.threads[th][0] + ')'; }
  var cfold = document.getElementById('ma-fold'), chide = document.getElementById('ma-hide');
  var borient = document.getElementById('ma-orient');
  cfold.addEventListener('change', function () { setFold(cfold.checked); });
  chide.addEventListener('change', function () { setHide(chide.checked); });
  borient.addEventListener('click', function () { setIcicle(!icicle); });

  /* ---- flame graph ---- */
  var canvas = document.getElementById('ma-flame'), ctx = canvas.getContext('2d');
  var tip = document.getElementById('ma-tip');
  var zoom = 0, search = null, rects = [], nrows = 1;

  function colour(k) {
    var s = fname(rep[k]), h = 0;
    for (var j = 0; j < s.length; j++) h = (h * 31 + s.charCodeAt(j)) >>> 0;
    var r = 205 + (h % 50), g = 80 + ((h >>> 8) % 120), bl = 40 + ((h >>> 16) % 50);
    return 'rgb(' + r + ',' + g + ',' + bl + ')';
  }
  function matches(k) {
    if (!search || !k) return false;
    var i = rep[k];
    return search.test(S[F[i]]) || search.test(S[FI[i]]);
  }
  function layout() {
    /* ancestors of the zoomed node on full width rows, then its subtree
     * scaled to the width; frames under half a pixel are skipped */
    var W = canvas.clientWidth || 800, out = [], chain = [], k;
    for (k = zoom; k; k = dp[k]) chain.push(k);
    chain.reverse();
    var top = [0].concat(chain), total = incB[zoom];
    for (k = 0; k < top.length - 1; k++) out.push({ i: top[k], x: 0, w: W, y: k, anc: true });
    if (total <= 0) { out.push({ i: zoom, x: 0, w: W, y: top.length - 1 }); return out; }
    var scale = W / total, stack = [[zoom, 0, top.length - 1]];
    while (stack.length) {
      var it = stack.pop(), node = it[0], x = it[1], y = it[2], w = incB[node] * scale;
      if (w < 0.5) continue;
      out.push({ i: node, x: x, w: w, y: y });
      var cx = x, ch = dkids[node];
      for (k = 0; k < ch.length; k++) {
        var cw = incB[ch[k]] * scale;
        if (cw >= 0.5 && y < 2000) stack.push([ch[k], cx, y + 1]);
        cx += cw;
      }
    }
    return out;
  }
  function rowY(y) { return icicle ? y * ROW : (nrows - 1 - y) * ROW; }
  function draw() {
    var dpr = window.devicePixelRatio || 1, W = canvas.clientWidth || 800;
    rects = layout();
    nrows = 1;
    rects.forEach(function (r) { if (r.y + 1 > nrows) nrows = r.y + 1; });
    canvas.style.height = (nrows * ROW) + 'px';
    canvas.width = Math.floor(W * dpr);
    canvas.height = Math.floor(nrows * ROW * dpr);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, nrows * ROW);
    ctx.font = '12px system-ui, sans-serif';
    ctx.textBaseline = 'middle';
    rects.forEach(function (r) {
      var m = matches(r.i), y = rowY(r.y);
      ctx.fillStyle = r.i === 0 ? '#c8c8c8' : m ? '#e040e0' : r.anc ? '#e8d8c8' : colour(r.i);
      ctx.fillRect(r.x, y, Math.max(r.w - 1, 0.5), ROW - 1);
      if (r.w > 30) {
        var text = r.i === 0 ? 'all: ' + bytes(incB[0]) + ' ' + what() +
          (thread >= 0 ? ', ' + threadName(thread) : '') : dlabel(r.i);
        var max = Math.floor((r.w - 6) / 6.5);
        if (text.length > max) text = text.slice(0, Math.max(0, max - 1)) + '\u2026';
        ctx.fillStyle = '#000';
        ctx.fillText(text, r.x + 3, y + ROW / 2);
      }
    });
    var mt = document.getElementById('ma-match');
    if (search) {
      /* matched bytes: matched frames not under another match */
      var sum = 0;
      for (var k = 1; k < dn; k++) {
        if (!matches(k)) continue;
        var a = dp[k], under = false, inZoom = k === zoom;
        while (a) { if (matches(a)) under = true; if (a === zoom) inZoom = true; a = dp[a]; }
        if (zoom === 0) inZoom = true;
        if (!under && inZoom) sum += incB[k];
      }
      mt.textContent = 'matched ' + bytes(sum) + ' (' + pct(sum, incB[zoom]) + ')';
    } else {
      mt.textContent = '';
    }
    document.getElementById('ma-flame-title').textContent = 'Flame graph: ' +
      (range ? what() + ' (allocated in the range and still live at its end)'
        : VIEWS[view] + ' (' + DESC[VIEWS[view]] + ')') +
      (thread >= 0 ? ', thread ' + threadName(thread) : '') + (zoom ? ', zoomed into ' + fname(rep[zoom]) : '');
    borient.textContent = icicle ? 'Flame (root at bottom)' : 'Icicle (root at top)';
  }
  function hit(ev) {
    var box = canvas.getBoundingClientRect(), x = ev.clientX - box.left, y = ev.clientY - box.top;
    var row = Math.floor(y / ROW);
    if (!icicle) row = nrows - 1 - row;
    for (var k = 0; k < rects.length; k++) {
      var r = rects[k];
      if (r.y === row && x >= r.x && x < r.x + r.w) return r.i;
    }
    return -1;
  }
  canvas.addEventListener('mousemove', function (ev) {
    var k = hit(ev);
    if (k < 0) { tip.style.display = 'none'; return; }
    var ov = otherViews();
    tip.textContent = (k ? fname(rep[k]) + (times[k] > 1 ? '  \u00d7' + times[k] + ' (recursion folded)' : '') +
      '\n' + where(rep[k], true) + '\n' : 'all stacks\n') +
      what() + ': ' + bytes(incB[k]) + ' in ' + count(incC[k]) + ' blocks, ' +
      pct(incB[k], incB[0]) + ' of all' + (zoom ? ', ' + pct(incB[k], incB[zoom]) + ' of the zoomed frame' : '') +
      '\nself (allocated here): ' + bytes(selfB[k]) +
      (thread >= 0 ? '\nthread: ' + threadName(thread) : '') +
      '\nviews: ' + VIEWS.map(function (name, j) { return name + ' ' + bytes(ov[j][k]); }).join(', ');
    tip.style.display = 'block';
    var tx = ev.clientX + 14, ty = ev.clientY + 14;
    if (tx + 420 > window.innerWidth) tx = Math.max(0, ev.clientX - 430);
    tip.style.left = tx + 'px';
    tip.style.top = ty + 'px';
  });
  canvas.addEventListener('mouseleave', function () { tip.style.display = 'none'; });
  canvas.addEventListener('click', function (ev) {
    var k = hit(ev);
    if (k < 0) return;
    zoomTo(k === zoom && k ? dp[k] : k);
  });
  function zoomTo(k) { zoom = k; draw(); }
  document.getElementById('ma-reset').addEventListener('click', function () { zoomTo(0); });
  var sbox = document.getElementById('ma-search');
  function setSearch(text) {
    sbox.value = text;
    if (!text) { search = null; draw(); return; }
    try { search = new RegExp(text, 'i'); }
    catch (e) { search = new RegExp(text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'i'); }
    draw();
  }
  sbox.addEventListener('input', function () { setSearch(sbox.value); });

  /* ---- top table: self figures grouped by line, sortable, paged ---- */
  var PAGE = 100, page = 0, sortKey = 'b', sortAsc = false, tlist = [];
  function topRows() {
    var groups = {}, list = [], k;
    for (k = 1; k < n; k++) {
      var b = cur.b[k], c = cur.c[k];
      if (!b && !c) continue;
      var key = F[k] + ':' + FI[k] + ':' + L[k];
      var g = groups[key];
      if (!g) { g = groups[key] = { i: k, b: 0, c: 0 }; list.push(g); }
      g.b += b; g.c += c;
    }
    var dir = sortAsc ? -1 : 1;
    list.sort(function (x, y) {
      var r = 0;
      if (sortKey === 'b') r = y.b - x.b || y.c - x.c;
      else if (sortKey === 'c') r = y.c - x.c || y.b - x.b;
      else {
        var a = sortKey === 'f' ? fname(x.i) : where(x.i, true), b = sortKey === 'f' ? fname(y.i) : where(y.i, true);
        r = a < b ? 1 : a > b ? -1 : y.b - x.b;
      }
      return dir * r;
    });
    return list;
  }
  function table() {
    var body = document.querySelector('#ma-top tbody'), all = incB[0];
    tlist = topRows();
    var pages = Math.max(1, Math.ceil(tlist.length / PAGE));
    if (page >= pages) page = pages - 1;
    body.textContent = '';
    tlist.slice(page * PAGE, page * PAGE + PAGE).forEach(function (g) {
      var tr = el('tr');
      tr.appendChild(el('td', bytes(g.b), 'num'));
      tr.appendChild(el('td', count(g.c), 'num'));
      tr.appendChild(el('td', pct(g.b, all), 'num'));
      tr.appendChild(el('td', fname(g.i), 'fn'));
      tr.appendChild(el('td', where(g.i, true), 'loc'));
      tr.addEventListener('click', function () { setSearch(fname(g.i).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')); });
      body.appendChild(tr);
    });
    if (!tlist.length) {
      var tr = el('tr'), td = el('td', (D.unknown || {})[VIEWS[view]] ?
        'not known for this capture (see the note above)' : 'nothing in this view');
      td.colSpan = 5; tr.appendChild(td); body.appendChild(tr);
    }
    document.getElementById('ma-page').textContent = tlist.length > PAGE ? 'rows ' + (page * PAGE + 1) + '\u2013' +
      Math.min(tlist.length, page * PAGE + PAGE) + ' of ' + tlist.length : tlist.length + ' rows';
    document.getElementById('ma-prev').disabled = page === 0;
    document.getElementById('ma-next').disabled = page >= pages - 1;
    var ths = document.querySelectorAll('#ma-top th');
    for (var j = 0; j < ths.length; j++)
      ths[j].className = (j === 2 ? 'num' : ths[j].className.indexOf('num') >= 0 ? 'num' : '') +
        (ths[j].getAttribute('data-key') === sortKey && j !== 2 ? ' sorted' + (sortAsc ? ' asc' : '') : '');
    document.getElementById('ma-top-title').textContent = 'Locations: ' + what() +
      (thread >= 0 ? ', thread ' + threadName(thread) : '') + ' (by line, ' + tlist.length + ' with a figure)';
  }
  document.getElementById('ma-prev').addEventListener('click', function () { page--; table(); });
  document.getElementById('ma-next').addEventListener('click', function () { page++; table(); });
  var ths = document.querySelectorAll('#ma-top th[data-key]');
  for (k = 0; k < ths.length; k++) ths[k].addEventListener('click', function () {
    var key = this.getAttribute('data-key');
    if (key === sortKey) sortAsc = !sortAsc;
    else { sortKey = key; sortAsc = key === 'f' || key === 'l'; }
    page = 0; table();
  });

  /* ---- memory over time: hover, drag to select a range ---- */
  var plot = document.getElementById('ma-plot'), pctx = plot.getContext('2d');
  var ptip = document.getElementById('ma-plot-tip');
  var SE = D.series, PX = null, tlive = null, drag = null;
  var timeX = SE.unit === 'time' && NB >= 2;
  function drawPlot() {
    var dpr = window.devicePixelRatio || 1, W = plot.clientWidth || 800, H = 220;
    plot.width = Math.floor(W * dpr); plot.height = Math.floor(H * dpr);
    plot.style.height = H + 'px';
    pctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    pctx.clearRect(0, 0, W, H);
    var X = SE.x, m = X.length, left = 70, right = 10, top = 10, bottom = 30;
    pctx.font = '11px system-ui, sans-serif';
    pctx.fillStyle = '#666';
    PX = null;
    if (m < 2) { pctx.fillText('not enough samples to plot', left, H / 2); return; }
    var x0 = SE.unit === 'time' ? 0 : X[0], x1 = X[m - 1], ymax = 1;
    if (timeX) x1 = Math.max(x1, TB[NB]);
    tlive = thread >= 0 && timeX && TL.bythread ? liveAtBounds(thread) : null;
    for (k = 0; k < m; k++) ymax = Math.max(ymax, SE.rss[k], SE.max[k], SE.live[k]);
    ymax = Math.max(ymax, D.peak.bytes) * 1.05;
    function px(x) { return left + (W - left - right) * (x1 > x0 ? (x - x0) / (x1 - x0) : 0); }
    function py(y) { return H - bottom - (H - top - bottom) * y / ymax; }
    PX = { px: px, x0: x0, x1: x1, left: left, right: right, W: W };
    if (range) {
      pctx.fillStyle = 'rgba(32,96,192,0.15)';
      pctx.fillRect(px(TB[range[0]]), top, px(TB[range[1]]) - px(TB[range[0]]), H - top - bottom);
      pctx.fillStyle = '#666';
    }
    if (drag && drag.moved) {
      pctx.fillStyle = 'rgba(32,96,192,0.25)';
      pctx.fillRect(Math.min(drag.a, drag.b), top, Math.abs(drag.b - drag.a), H - top - bottom);
      pctx.fillStyle = '#666';
    }
    pctx.strokeStyle = '#ddd'; pctx.beginPath();
    for (k = 0; k <= 4; k++) {
      var yv = ymax * k / 4;
      pctx.moveTo(left, py(yv)); pctx.lineTo(W - right, py(yv));
      pctx.fillText(bytes(yv), 4, py(yv) + 4);
    }
    pctx.stroke();
    var span = (x1 - x0) / 1e9, digits = span < 0.05 ? 3 : span < 2 ? 2 : span < 20 ? 1 : 0;
    for (k = 0; k <= 4; k++) {
      var xv = x0 + (x1 - x0) * k / 4;
      pctx.fillText(SE.unit === 'time' ? (xv / 1e9).toFixed(digits) + ' s' : count(Math.round(xv)) + ' ev',
        px(xv) - 14, H - 10);
    }
    function line(xs, arr, colour, width) {
      pctx.strokeStyle = colour; pctx.lineWidth = width; pctx.beginPath();
      for (var j = 0; j < xs.length; j++) { var a = px(xs[j]), b = py(arr[j]); if (j) pctx.lineTo(a, b); else pctx.moveTo(a, b); }
      pctx.stroke(); pctx.lineWidth = 1;
    }
    var hasRss = SE.rss.some(function (r) { return r > 0; }), dim = tlive ? 0.35 : 1;
    line(X, SE.max, 'rgba(240,140,40,' + 0.35 * dim + ')', 3);
    line(X, SE.live, 'rgba(224,112,0,' + dim + ')', 1.5);
    if (hasRss) line(X, SE.rss, 'rgba(32,96,192,' + dim + ')', 1.5);
    if (tlive) line(TB, tlive, '#8020c0', 2);
    if (D.peak.bytes && D.peak.x !== null) {
      var pxx = px(D.peak.x);
      pctx.strokeStyle = '#b00020'; pctx.setLineDash([4, 3]); pctx.beginPath();
      pctx.moveTo(pxx, top); pctx.lineTo(pxx, H - bottom); pctx.stroke(); pctx.setLineDash([]);
      pctx.fillStyle = '#b00020';
      pctx.fillText('peak ' + bytes(D.peak.bytes), Math.min(pxx + 4, W - 90), top + 10);
    }
    var lg = document.getElementById('ma-plot-legend');
    lg.innerHTML = '';
    var items = [['#e07000', 'tracked live bytes (all threads)'], ['rgba(240,140,40,0.5)', 'highest tracked between points'],
     ['#2060c0', hasRss ? 'RSS (process)' : 'RSS (not sampled)'], ['#b00020', 'peak']];
    if (tlive) items.unshift(['#8020c0', 'live bytes of ' + threadName(thread)]);
    items.forEach(function (it) {
      var s = el('i'); s.style.background = it[0]; lg.appendChild(s); lg.appendChild(document.createTextNode(it[1]));
    });
    document.getElementById('ma-plot-title').textContent = 'Memory over time' + (tlive ? ': thread ' + threadName(thread) : '');
  }
  function plotX(ev) { return ev.clientX - plot.getBoundingClientRect().left; }
  function xToValue(x) {
    var f = (x - PX.left) / (PX.W - PX.left - PX.right);
    return PX.x0 + Math.min(1, Math.max(0, f)) * (PX.x1 - PX.x0);
  }
  function nearest(arr, v) {
    var lo = 0, hi = arr.length - 1;
    while (hi - lo > 1) { var mid = (lo + hi) >> 1; if (arr[mid] <= v) lo = mid; else hi = mid; }
    return Math.abs(arr[hi] - v) < Math.abs(arr[lo] - v) ? hi : lo;
  }
  plot.addEventListener('mousemove', function (ev) {
    if (!PX) return;
    var x = plotX(ev);
    if (drag) { drag.b = x; drag.moved = drag.moved || Math.abs(drag.b - drag.a) > 3; drawPlot(); }
    var j = nearest(SE.x, xToValue(x)), t = SE.x[j];
    var text = (SE.unit === 'time' ? 't = ' + secs(t) : 'event ' + count(t)) +
      '\ntracked live ' + bytes(SE.live[j]) + (SE.rss[j] ? '\nRSS ' + bytes(SE.rss[j]) : '');
    if (tlive) { var c = nearest(TB, xToValue(x)); text += '\n' + threadName(thread) + ' live ' + bytes(tlive[c]) + ' at ' + secs(TB[c]); }
    ptip.textContent = text;
    ptip.style.display = 'block';
    ptip.style.left = Math.min(x + 12, PX.W - 180) + 'px';
    ptip.style.top = '20px';
  });
  plot.addEventListener('mouseleave', function () { ptip.style.display = 'none'; });
  plot.addEventListener('mousedown', function (ev) {
    if (!PX || !timeX) return;
    drag = { a: plotX(ev), b: plotX(ev), moved: false };
    ev.preventDefault();
  });
  window.addEventListener('mouseup', function (ev) {
    if (!drag) return;
    var d = drag;
    drag = null;
    d.b = plotX(ev);
    if (!d.moved && Math.abs(d.b - d.a) <= 3) { setRange(null); return; }
    var t0 = xToValue(Math.min(d.a, d.b)), t1 = xToValue(Math.max(d.a, d.b));
    setRange([t0, t1]);
  });
  /* a time range (ns) snapped to the bucket bounds around it */
  function setRange(t) {
    if (!t || !timeX) { range = null; }
    else {
      var c1 = 0, c2 = NB;
      for (k = 0; k <= NB; k++) if (TB[k] <= t[0]) c1 = k;
      for (k = NB; k >= 0; k--) if (TB[k] >= t[1]) c2 = k;
      if (c2 <= c1) c2 = Math.min(NB, c1 + 1);
      if (c2 <= c1) c1 = c2 - 1;
      range = [c1, c2];
    }
    var rb = document.getElementById('ma-range');
    rb.className = range ? 'on' : '';
    if (range) document.getElementById('ma-range-text').textContent = 'Time range ' + secs(TB[range[0]]) + ' \u2013 ' +
      secs(TB[range[1]]) + ': what was allocated in it and still live at its end (the views do not apply)' +
      (TL.bythread ? '.' : '; this capture is too big for ranges by thread: all threads\u2019 figures.');
    zoom = 0;
    refresh();
  }
  document.getElementById('ma-range-clear').addEventListener('click', function () { setRange(null); });

  function refresh() {
    compute();
    if (zoom && !incB[zoom]) zoom = 0;
    var btns = vbox.querySelectorAll('button');
    for (var j = 0; j < btns.length; j++) {
      btns[j].className = j === view && !range ? 'on' : '';
      btns[j].setAttribute('aria-selected', j === view && !range ? 'true' : 'false');
    }
    draw();
    table();
    drawPlot();
  }
  function setView(k) { view = k; range = null; document.getElementById('ma-range').className = ''; refresh(); }
  function setThread(th) { thread = th; tsel.value = String(th); refresh(); }
  function setFold(b) { fold = b; cfold.checked = b; buildDisplay(); refresh(); }
  function setHide(b) { hide = b; chide.checked = b; buildDisplay(); refresh(); }
  function setIcicle(b) { icicle = b; draw(); }

  window.addEventListener('resize', function () { draw(); drawPlot(); });
  try {
    buildDisplay();
    refresh();
  } catch (e) {
    fail('error: ' + e.message);
  }

  /* #selftest: exercise the interactive paths (used by the tests in a
   * headless browser) and leave the results in the DOM */
  if (location.hash === '#selftest') {
    try {
      var res = [], first = topRows()[0];
      res.push('top=' + (first ? fname(first.i) : ''));
      for (v = 0; v < 4; v++) { setView(v); res.push(VIEWS[v] + '=' + incB[0]); }
      setView(VIEW0);
      if (first) {
        var fd = dmap[first.i];
        zoomTo(fd);
        res.push('zoom=' + (rects.some(function (r) { return r.i === fd && Math.abs(r.w - (canvas.clientWidth || 800)) < 1; }) ? 'ok' : 'bad'));
        zoomTo(0);
        setSearch(fname(first.i));
        res.push('search=' + document.getElementById('ma-match').textContent);
        setSearch('');
      }
      res.push('rects=' + rects.length);
      document.body.setAttribute('data-selftest', res.join(';'));
    } catch (e) {
      fail('selftest: ' + e.message);
    }
  }
  /* #steps=JSON: a script of user actions, each done through the page's
   * own event handlers (synthetic mouse events on the canvases, clicks on
   * the controls), and snapshots of what is shown, written as JSON into
   * #ma-selftest for the tests */
  if (location.hash.indexOf('#steps=') === 0) {
    var out = { snaps: {} };
    try {
      var steps = JSON.parse(decodeURIComponent(location.hash.slice(7)));
      steps.forEach(function (st) { step(st, out); });
    } catch (e) {
      fail('steps: ' + e.message + ' ' + (e.stack || ''));
    }
    var pre = document.getElementById('ma-selftest');
    pre.textContent = JSON.stringify(out);
  }
  /* the same steps, called by a test driving the browser with real input
   * (the DevTools protocol): returns the JSON */
  window.maSteps = function (steps) {
    var o = { snaps: {} };
    steps.forEach(function (st) { step(st, o); });
    return JSON.stringify(o);
  };
  function mouse(target, type, x, y) {
    var box = target.getBoundingClientRect();
    target.dispatchEvent(new MouseEvent(type, { bubbles: true, clientX: box.left + x, clientY: box.top + y, button: 0 }));
  }
  function step(st, out) {
    var op = st[0];
    if (!PX && /drag|plot/.test(op)) return; /* no plot: nothing to do */
    if (op === 'thread') {
      for (var j = 0; j < tsel.options.length; j++) {
        var o = tsel.options[j], th = parseInt(o.value, 10);
        if (st[1] === null ? th < 0 : th >= 0 && D.threads[th][1] === st[1]) {
          tsel.value = o.value; tsel.dispatchEvent(new Event('change'));
        }
      }
    } else if (op === 'drag') { /* wall-clock seconds (Unix time) */
      var t0 = Math.max(0, st[1] * 1e9 - M.start_ns), t1 = Math.min(PX.x1, st[2] * 1e9 - M.start_ns);
      var a = PX.px(t0), b = PX.px(t1);
      mouse(plot, 'mousedown', a, 100); mouse(plot, 'mousemove', (a + b) / 2, 100);
      mouse(plot, 'mousemove', b, 100); mouse(plot, 'mouseup', b, 100);
    } else if (op === 'dragrel') { /* seconds since the capture started */
      var ra = PX.px(st[1] * 1e9), rb = PX.px(Math.min(PX.x1, st[2] * 1e9));
      mouse(plot, 'mousedown', ra, 100); mouse(plot, 'mousemove', rb, 100); mouse(plot, 'mouseup', rb, 100);
    } else if (op === 'css') { /* for screenshots: a style rule */
      document.head.appendChild(el('style', st[1]));
    } else if (op === 'zoom') { /* the widest frame of this function */
      var best = 0;
      for (var z = 1; z < dn; z++) if (fname(rep[z]) === st[1] && (!best || incB[z] > incB[best])) best = z;
      zoomTo(best);
    } else if (op === 'coords') { /* page coordinates for real input */
      var pr = plot.getBoundingClientRect(), hd = document.querySelectorAll('#ma-top th');
      var cnt = null;
      for (var q = 0; q < hd.length; q++) if (hd[q].textContent === 'Count') cnt = hd[q].getBoundingClientRect();
      out.snaps[st[3]] = { x0: pr.left + PX.px(Math.max(0, st[1] * 1e9 - M.start_ns)),
        x1: pr.left + PX.px(Math.min(PX.x1, st[2] * 1e9 - M.start_ns)), y: pr.top + 100,
        hx: cnt && cnt.left + cnt.width / 2, hy: cnt && cnt.top + cnt.height / 2 };
    } else if (op === 'click-plot') {
      mouse(plot, 'mousedown', 300, 100); mouse(plot, 'mouseup', 300, 100);
    } else if (op === 'hover-plot') {
      mouse(plot, 'mousemove', PX.px(st[1] * 1e9 - M.start_ns), 100);
      out.snaps[st[2]] = ptip.textContent;
    } else if (op === 'fold') { if (cfold.checked !== !!st[1]) cfold.click(); }
    else if (op === 'hide') { if (chide.checked !== !!st[1]) chide.click(); }
    else if (op === 'orient') { if (icicle !== (st[1] === 'icicle')) borient.click(); }
    else if (op === 'view') { vbox.querySelectorAll('button')[VIEWS.indexOf(st[1])].click(); }
    else if (op === 'sort') {
      var hs = document.querySelectorAll('#ma-top th');
      for (var h = 0; h < hs.length; h++) if (hs[h].textContent === st[1]) { hs[h].click(); break; }
    } else if (op === 'next') { document.getElementById('ma-next').click(); }
    else if (op === 'snap') { out.snaps[st[1]] = snapshot(); }
  }
  function snapshot() {
    var frames = rects.filter(function (r) { return r.i; }).map(function (r) {
      var i = rep[r.i];
      return { fn: S[F[i]], file: S[FI[i]], line: L[i], times: times[r.i], depth: ddepth[r.i], bytes: incB[r.i],
        self: selfB[r.i], w: r.w, y: rowY(r.y) };
    });
    var rows = [], trs = document.querySelectorAll('#ma-top tbody tr');
    for (var j = 0; j < trs.length; j++) {
      var td = trs[j].querySelectorAll('td');
      if (td.length === 5) rows.push([td[3].textContent, td[4].textContent, td[0].textContent, td[1].textContent]);
    }
    var rawRows = tlist.map(function (g) { return [fname(g.i), S[FI[g.i]], L[g.i], g.b, g.c]; });
    return { what: what(), thread: thread >= 0 ? D.threads[thread][1] : null, total: incB[0], frames: frames,
      rows: rows, list: rawRows, page: document.getElementById('ma-page').textContent,
      range: range ? [TB[range[0]], TB[range[1]]] : null, nrows: nrows, height: canvas.clientHeight,
      tlive: tlive ? Array.prototype.slice.call(tlive) : null, bounds: TB,
      liveEnd: NB ? liveAtBounds(thread)[NB] : null,
      title: document.getElementById('ma-flame-title').textContent };
  }
  document.body.setAttribute('data-ready', errors.length ? 'errors' : '1');
})();
