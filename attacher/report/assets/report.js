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
    L = D.nodes.l, V = D.nodes.v, n = P.length;
  var view = Math.max(0, VIEWS.indexOf(D.view));
  var ROW = 18;

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

  /* ---- the tree: children, inclusive figures per view ---- */
  var kids = new Array(n), i, v;
  for (i = 0; i < n; i++) kids[i] = [];
  for (i = 1; i < n; i++) kids[P[i]].push(i);
  for (i = 0; i < n; i++) kids[i].sort(function (a, b) {
    var x = label(a), y = label(b); return x < y ? -1 : x > y ? 1 : a - b;
  });
  var depth = new Int32Array(n);
  for (i = 1; i < n; i++) depth[i] = depth[P[i]] + 1;
  var incB = [], incC = [];
  for (v = 0; v < 4; v++) {
    var b = new Float64Array(n), c = new Float64Array(n);
    for (i = 0; i < n; i++) { b[i] = V[i * 8 + v * 2]; c[i] = V[i * 8 + v * 2 + 1]; }
    for (i = n - 1; i > 0; i--) { b[P[i]] += b[i]; c[P[i]] += c[i]; }
    incB.push(b); incC.push(c);
  }

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
  put('; peak ', bytes(D.peak.bytes));
  sm.appendChild(document.createTextNode(D.peak.when ? ' ' + D.peak.when : ''));
  put('; temporary ', bytes(T.temporary_bytes));
  sm.appendChild(document.createTextNode(' (window ' + D.window + ')'));
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
  notes.appendChild(el('p', 'memattach ' + D.version + ' \u2014 ' + count(T.events) + ' events, ' +
    count(n - 1) + ' distinct frames in the tree.'));

  /* ---- view switcher ---- */
  var vbox = document.getElementById('ma-views');
  VIEWS.forEach(function (name, k) {
    var btn = el('button', name);
    btn.type = 'button';
    btn.title = DESC[name];
    btn.setAttribute('role', 'tab');
    btn.addEventListener('click', function () { setView(k); });
    vbox.appendChild(btn);
  });

  /* ---- flame graph ---- */
  var canvas = document.getElementById('ma-flame'), ctx = canvas.getContext('2d');
  var tip = document.getElementById('ma-tip');
  var zoom = 0, search = null, rects = [], hover = -1;

  function colour(i) {
    var s = fname(i), h = 0;
    for (var k = 0; k < s.length; k++) h = (h * 31 + s.charCodeAt(k)) >>> 0;
    var r = 205 + (h % 50), g = 80 + ((h >>> 8) % 120), bl = 40 + ((h >>> 16) % 50);
    return 'rgb(' + r + ',' + g + ',' + bl + ')';
  }
  function matches(i) {
    if (!search || !i) return false;
    return search.test(S[F[i]]) || search.test(S[FI[i]]);
  }
  function layout() {
    /* ancestors of the zoomed node on full width rows, then its subtree
     * scaled to the width; frames under half a pixel are skipped */
    var W = canvas.clientWidth || 800, B = incB[view], out = [], chain = [], k;
    for (k = zoom; k; k = P[k]) chain.push(k);
    chain.reverse();
    var top = [0].concat(chain), total = B[zoom];
    for (k = 0; k < top.length - 1; k++) out.push({ i: top[k], x: 0, w: W, y: k, anc: true });
    if (total <= 0) { out.push({ i: zoom, x: 0, w: W, y: top.length - 1 }); return out; }
    var scale = W / total, stack = [[zoom, 0, top.length - 1]];
    while (stack.length) {
      var it = stack.pop(), node = it[0], x = it[1], y = it[2], w = B[node] * scale;
      if (w < 0.5) continue;
      out.push({ i: node, x: x, w: w, y: y });
      var cx = x, ch = kids[node];
      for (k = 0; k < ch.length; k++) {
        var cw = B[ch[k]] * scale;
        if (cw >= 0.5 && y < 2000) stack.push([ch[k], cx, y + 1]);
        cx += cw;
      }
    }
    return out;
  }
  function draw() {
    var dpr = window.devicePixelRatio || 1, W = canvas.clientWidth || 800;
    rects = layout();
    var rows = 1;
    rects.forEach(function (r) { if (r.y + 1 > rows) rows = r.y + 1; });
    canvas.style.height = (rows * ROW) + 'px';
    canvas.width = Math.floor(W * dpr);
    canvas.height = Math.floor(rows * ROW * dpr);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, rows * ROW);
    ctx.font = '12px system-ui, sans-serif';
    ctx.textBaseline = 'middle';
    rects.forEach(function (r) {
      var m = matches(r.i);
      ctx.fillStyle = r.i === 0 ? '#c8c8c8' : m ? '#e040e0' : r.anc ? '#e8d8c8' : colour(r.i);
      ctx.fillRect(r.x, r.y * ROW, Math.max(r.w - 1, 0.5), ROW - 1);
      if (r.w > 30) {
        var text = r.i === 0 ? 'all: ' + bytes(incB[view][0]) + ' ' + VIEWS[view] : label(r.i);
        var max = Math.floor((r.w - 6) / 6.5);
        if (text.length > max) text = text.slice(0, Math.max(0, max - 1)) + '\u2026';
        ctx.fillStyle = '#000';
        ctx.fillText(text, r.x + 3, r.y * ROW + ROW / 2);
      }
    });
    var mt = document.getElementById('ma-match');
    if (search) {
      /* matched bytes: matched frames not under another match */
      var sum = 0, B = incB[view];
      for (var k = 1; k < n; k++) {
        if (!matches(k)) continue;
        var a = P[k], under = false, inZoom = k === zoom;
        while (a) { if (matches(a)) under = true; if (a === zoom) inZoom = true; a = P[a]; }
        if (zoom === 0) inZoom = true;
        if (!under && inZoom) sum += B[k];
      }
      mt.textContent = 'matched ' + bytes(sum) + ' (' + pct(sum, B[zoom]) + ')';
    } else {
      mt.textContent = '';
    }
    document.getElementById('ma-flame-title').textContent = 'Flame graph: ' + VIEWS[view] +
      ' (' + DESC[VIEWS[view]] + ')' + (zoom ? ', zoomed into ' + fname(zoom) : '');
  }
  function hit(ev) {
    var box = canvas.getBoundingClientRect(), x = ev.clientX - box.left, y = ev.clientY - box.top;
    var row = Math.floor(y / ROW);
    for (var k = 0; k < rects.length; k++) {
      var r = rects[k];
      if (r.y === row && x >= r.x && x < r.x + r.w) return r.i;
    }
    return -1;
  }
  canvas.addEventListener('mousemove', function (ev) {
    var i = hit(ev);
    if (i < 0) { tip.style.display = 'none'; return; }
    var B = incB[view], C = incC[view], self = V[i * 8 + view * 2];
    tip.textContent = (i ? fname(i) + '\n' + where(i, true) + '\n' : 'all stacks\n') +
      VIEWS[view] + ': ' + bytes(B[i]) + ' in ' + count(C[i]) + ' blocks, ' +
      pct(B[i], B[0]) + ' of all' + (zoom ? ', ' + pct(B[i], B[zoom]) + ' of the zoomed frame' : '') +
      '\nself (allocated here): ' + bytes(self) +
      '\nother views: ' + VIEWS.map(function (name, k) { return name + ' ' + bytes(incB[k][i]); }).join(', ');
    tip.style.display = 'block';
    var tx = ev.clientX + 14, ty = ev.clientY + 14;
    if (tx + 420 > window.innerWidth) tx = Math.max(0, ev.clientX - 430);
    tip.style.left = tx + 'px';
    tip.style.top = ty + 'px';
    hover = i;
  });
  canvas.addEventListener('mouseleave', function () { tip.style.display = 'none'; hover = -1; });
  canvas.addEventListener('click', function (ev) {
    var i = hit(ev);
    if (i < 0) return;
    zoomTo(i === zoom && i ? P[i] : i);
  });
  function zoomTo(i) { zoom = i; draw(); }
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

  /* ---- top table: self figures grouped by line ---- */
  function topRows() {
    var groups = {}, list = [], k;
    for (k = 1; k < n; k++) {
      var b = V[k * 8 + view * 2], c = V[k * 8 + view * 2 + 1];
      if (!b && !c) continue;
      var key = F[k] + ':' + FI[k] + ':' + L[k];
      var g = groups[key];
      if (!g) { g = groups[key] = { i: k, b: 0, c: 0 }; list.push(g); }
      g.b += b; g.c += c;
    }
    list.sort(function (x, y) { return y.b - x.b || y.c - x.c; });
    return list;
  }
  function table() {
    var body = document.querySelector('#ma-top tbody'), list = topRows(), all = incB[view][0];
    body.textContent = '';
    list.slice(0, 30).forEach(function (g) {
      var tr = el('tr');
      tr.appendChild(el('td', bytes(g.b), 'num'));
      tr.appendChild(el('td', count(g.c), 'num'));
      tr.appendChild(el('td', pct(g.b, all), 'num'));
      tr.appendChild(el('td', fname(g.i), 'fn'));
      tr.appendChild(el('td', where(g.i, true), 'loc'));
      tr.addEventListener('click', function () { setSearch(fname(g.i).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')); });
      body.appendChild(tr);
    });
    if (!list.length) {
      var tr = el('tr'), td = el('td', 'nothing in this view');
      td.colSpan = 5; tr.appendChild(td); body.appendChild(tr);
    }
    document.getElementById('ma-top-title').textContent = 'Top locations: ' + VIEWS[view] + ' (by line, ' +
      list.length + ' with a figure)';
  }

  /* ---- memory over time ---- */
  var plot = document.getElementById('ma-plot'), pctx = plot.getContext('2d');
  var SE = D.series;
  function drawPlot() {
    var dpr = window.devicePixelRatio || 1, W = plot.clientWidth || 800, H = 220;
    plot.width = Math.floor(W * dpr); plot.height = Math.floor(H * dpr);
    plot.style.height = H + 'px';
    pctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    pctx.clearRect(0, 0, W, H);
    var X = SE.x, m = X.length, left = 70, right = 10, top = 10, bottom = 30;
    pctx.font = '11px system-ui, sans-serif';
    pctx.fillStyle = '#666';
    if (m < 2) { pctx.fillText('not enough samples to plot', left, H / 2); return; }
    var x0 = X[0], x1 = X[m - 1], ymax = 1, k;
    for (k = 0; k < m; k++) ymax = Math.max(ymax, SE.rss[k], SE.max[k], SE.live[k]);
    ymax = Math.max(ymax, D.peak.bytes) * 1.05;
    function px(x) { return left + (W - left - right) * (x1 > x0 ? (x - x0) / (x1 - x0) : 0); }
    function py(y) { return H - bottom - (H - top - bottom) * y / ymax; }
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
    function line(arr, colour, width) {
      pctx.strokeStyle = colour; pctx.lineWidth = width; pctx.beginPath();
      for (var j = 0; j < m; j++) { var a = px(X[j]), b = py(arr[j]); if (j) pctx.lineTo(a, b); else pctx.moveTo(a, b); }
      pctx.stroke(); pctx.lineWidth = 1;
    }
    var hasRss = SE.rss.some(function (r) { return r > 0; });
    line(SE.max, 'rgba(240,140,40,0.35)', 3);
    line(SE.live, '#e07000', 1.5);
    if (hasRss) line(SE.rss, '#2060c0', 1.5);
    if (D.peak.bytes && D.peak.x !== null) {
      var pxx = px(D.peak.x);
      pctx.strokeStyle = '#b00020'; pctx.setLineDash([4, 3]); pctx.beginPath();
      pctx.moveTo(pxx, top); pctx.lineTo(pxx, H - bottom); pctx.stroke(); pctx.setLineDash([]);
      pctx.fillStyle = '#b00020';
      pctx.fillText('peak ' + bytes(D.peak.bytes), Math.min(pxx + 4, W - 90), top + 10);
    }
    var lg = document.getElementById('ma-plot-legend');
    lg.innerHTML = '';
    [['#e07000', 'tracked live bytes'], ['rgba(240,140,40,0.5)', 'highest tracked between points'],
     ['#2060c0', hasRss ? 'RSS' : 'RSS (not sampled)'], ['#b00020', 'peak']].forEach(function (it) {
      var s = el('i'); s.style.background = it[0]; lg.appendChild(s); lg.appendChild(document.createTextNode(it[1]));
    });
  }

  function setView(k) {
    view = k;
    var btns = vbox.querySelectorAll('button');
    for (var j = 0; j < btns.length; j++) {
      btns[j].className = j === k ? 'on' : '';
      btns[j].setAttribute('aria-selected', j === k ? 'true' : 'false');
    }
    if (zoom && !incB[view][zoom]) zoom = 0;
    draw();
    table();
  }

  window.addEventListener('resize', function () { draw(); drawPlot(); });
  try {
    setView(view);
    drawPlot();
  } catch (e) {
    fail('error: ' + e.message);
  }

  /* #selftest: exercise the interactive paths (used by the tests in a
   * headless browser) and leave the results in the DOM */
  if (location.hash === '#selftest') {
    try {
      var res = [], first = topRows()[0];
      res.push('top=' + (first ? fname(first.i) : ''));
      for (v = 0; v < 4; v++) { setView(v); res.push(VIEWS[v] + '=' + incB[v][0]); }
      setView(Math.max(0, VIEWS.indexOf(D.view)));
      if (first) {
        zoomTo(first.i);
        res.push('zoom=' + (rects.some(function (r) { return r.i === first.i && Math.abs(r.w - (canvas.clientWidth || 800)) < 1; }) ? 'ok' : 'bad'));
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
  document.body.setAttribute('data-ready', errors.length ? 'errors' : '1');
})();
