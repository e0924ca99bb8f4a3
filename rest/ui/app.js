// The weir web UI: plain JavaScript over the REST API of the same origin
// (/v1/...). It refreshes every second.
'use strict';

const REFRESH_MS = 1000;
const SVG = 'http://www.w3.org/2000/svg';

const ui = {
  jobId: null,        // the job shown, or null for the job list
  vertexId: null,     // the vertex whose subtasks are listed
  checkpointId: null, // the checkpoint of the barrier timeline (null: latest completed)
  followLatest: true,
  prev: {},           // vertex id -> {t, records, subtasks: [{busy, idle, bp}]}
  live: {},           // vertex id -> {rate, bp, busy}
  busy: false,
  pendingConfirm: null,
};

// A token in the URL's fragment (#token=...) becomes a cookie the API
// accepts, and leaves the address bar.
(function takeToken() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    document.cookie = 'weir-token=' + encodeURIComponent(decodeURIComponent(m[1])) + '; path=/; SameSite=Strict';
    history.replaceState(null, '', location.pathname);
  }
})();

async function api(method, path, body) {
  const opts = { method, headers: {} };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const r = await fetch('/v1' + path, opts);
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
  if (!r.ok) {
    const msg = data && data.errors ? data.errors.join('; ') : text;
    throw new Error(r.status + ': ' + msg);
  }
  return data;
}

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function svgEl(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function fmtTime(ms) { return ms > 0 ? new Date(ms).toISOString().replace('T', ' ').replace('Z', '') : '-'; }
function fmtDur(ms) {
  if (ms < 0 || ms === undefined) return '-';
  if (ms < 1000) return ms + ' ms';
  if (ms < 60000) return (ms / 1000).toFixed(1) + ' s';
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return (h ? h + 'h ' : '') + m + 'm ' + (s % 60) + 's';
}
function fmtNum(n) {
  if (n >= 1e9) return (n / 1e9).toFixed(2) + ' G';
  if (n >= 1e6) return (n / 1e6).toFixed(2) + ' M';
  if (n >= 1e4) return (n / 1e3).toFixed(1) + ' k';
  return String(Math.round(n));
}
function fmtBytes(n) {
  if (n >= 1 << 30) return (n / (1 << 30)).toFixed(1) + ' GiB';
  if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + ' MiB';
  if (n >= 1 << 10) return (n / (1 << 10)).toFixed(1) + ' KiB';
  return n + ' B';
}
function pct(x) { return (100 * x).toFixed(0) + '%'; }
function counts(m) {
  return Object.entries(m || {}).map(([k, v]) => k.toLowerCase() + ' ' + v).join(', ') || '-';
}
function setRows(tbody, rows) { tbody.replaceChildren(...rows); }

function route() {
  const m = location.hash.match(/^#job\/([^/]+)/);
  const id = m ? decodeURIComponent(m[1]) : null;
  if (id !== ui.jobId) {
    ui.jobId = id;
    ui.vertexId = null;
    ui.checkpointId = null;
    ui.followLatest = true;
    ui.prev = {};
    ui.live = {};
  }
  $('jobs-view').hidden = !!id;
  $('job-view').hidden = !id;
  refresh();
}

async function refresh() {
  if (ui.busy) return;
  ui.busy = true;
  try {
    const ov = await api('GET', '/overview');
    $('overview').textContent = `${ov['jobs-running']} running, ${ov['jobs-finished']} finished, ${ov['jobs-failed']} failed, ${ov['jobs-cancelled']} cancelled · ${ov.taskmanagers} task managers, ${ov['slots-total']} slots`;
    if (ui.jobId) await refreshJob();
    else await refreshJobs();
    $('status').textContent = 'updated ' + new Date().toLocaleTimeString();
  } catch (e) {
    $('status').textContent = e.message.startsWith('401')
      ? 'the API needs the token: open this page as /#token=<token>'
      : 'cannot reach the API: ' + e.message;
  } finally {
    ui.busy = false;
  }
}

async function refreshJobs() {
  const l = await api('GET', '/jobs');
  setRows($('jobs').tBodies[0], l.jobs.map((j) => el('tr', { class: 'clickable', 'data-job': j.jid, onclick: () => { location.hash = '#job/' + j.jid; } },
    el('td', {}, j.name), el('td', {}, el('span', { class: 'state ' + j.state }, j.state)), el('td', {}, fmtTime(j['start-time'])),
    el('td', {}, fmtDur(j.duration)), el('td', {}, counts(j.tasks)), el('td', { class: 'muted' }, j.jid))));
}

async function refreshJob() {
  const id = encodeURIComponent(ui.jobId);
  const job = await api('GET', '/jobs/' + id);
  $('job-name').textContent = job.name;
  const st = $('job-state');
  st.textContent = job.state;
  st.className = 'state ' + job.state;
  $('job-info').textContent = `id ${job.jid} · started ${fmtTime(job['start-time'])} · running ${fmtDur(job.duration)} · ${job.restarts} restarts · max parallelism ${job.maxParallelism}` +
    (job.error ? ' · error: ' + job.error : '');
  const ended = ['FINISHED', 'FAILED', 'CANCELED'].includes(job.state);
  for (const b of ['btn-checkpoint', 'btn-savepoint', 'btn-stop', 'btn-cancel']) $(b).disabled = ended;
  if (ui.vertexId === null && job.vertices.length) ui.vertexId = job.vertices[0].id;
  const details = await Promise.all(job.vertices.map((v) => api('GET', `/jobs/${id}/vertices/${encodeURIComponent(v.id)}`)));
  updateLive(job, details);
  drawGraph(job);
  const vd = details.find((d) => d.id === ui.vertexId);
  if (vd) drawSubtasks(vd);
  const [cps, ex] = await Promise.all([api('GET', `/jobs/${id}/checkpoints?limit=20`), api('GET', `/jobs/${id}/exceptions`)]);
  drawCheckpoints(cps);
  drawExceptions(ex);
  let cid = ui.checkpointId;
  if (ui.followLatest && cps.latest.completed) cid = cps.latest.completed.id;
  if (cid !== null) await drawTimeline(job, cid);
}

// updateLive turns two samples of the counters into rates: records per
// second and the share of the last interval each subtask was busy or
// backpressured (the most of any subtask of the vertex).
function updateLive(job, details) {
  const now = Date.now();
  for (const [i, d] of details.entries()) {
    const v = job.vertices[i];
    const isSource = !job.edges.some((e) => e.target === v.id);
    const records = d.subtasks.reduce((s, t) => s + (isSource ? t.metrics['write-records'] : t.metrics['read-records']), 0);
    const subs = d.subtasks.map((t) => ({ busy: t.metrics['accumulated-busy-time'], idle: t.metrics['accumulated-idle-time'], bp: t.metrics['accumulated-backpressured-time'] }));
    const p = ui.prev[v.id];
    const live = { rate: 0, bp: v.metrics['backpressure-ratio'], busy: v.metrics['busy-ratio'] };
    if (p && now > p.t) {
      live.rate = Math.max(0, (records - p.records) * 1000 / (now - p.t));
      let bp = 0, busy = 0;
      subs.forEach((s, k) => {
        const q = p.subtasks[k];
        if (!q) return;
        const total = (s.busy - q.busy) + (s.idle - q.idle) + (s.bp - q.bp);
        if (total > 0) {
          bp = Math.max(bp, (s.bp - q.bp) / total);
          busy = Math.max(busy, (s.busy - q.busy) / total);
        }
      });
      live.bp = bp;
      live.busy = busy;
    }
    ui.prev[v.id] = { t: now, records, subtasks: subs };
    ui.live[v.id] = live;
  }
}

function bpColour(r) {
  const hue = Math.round(120 * (1 - Math.min(1, Math.max(0, r))));
  return `hsl(${hue}, 65%, 78%)`;
}

function drawGraph(job) {
  const svg = $('graph');
  const depth = {};
  const byId = Object.fromEntries(job.vertices.map((v) => [v.id, v]));
  const d = (id) => {
    if (depth[id] !== undefined) return depth[id];
    depth[id] = 0;
    let m = 0;
    for (const e of job.edges) if (e.target === id) m = Math.max(m, d(e.source) + 1);
    depth[id] = m;
    return m;
  };
  job.vertices.forEach((v) => d(v.id));
  const cols = {};
  for (const v of job.vertices) (cols[depth[v.id]] = cols[depth[v.id]] || []).push(v.id);
  const W = 230, H = 74, GX = 90, GY = 24, PAD = 16;
  const pos = {};
  let rows = 0;
  for (const [c, ids] of Object.entries(cols)) {
    ids.forEach((id, r) => { pos[id] = { x: PAD + c * (W + GX), y: PAD + r * (H + GY) }; });
    rows = Math.max(rows, ids.length);
  }
  const ncols = Object.keys(cols).length;
  const gh = PAD * 2 + rows * H + (rows - 1) * GY;
  svg.setAttribute('viewBox', `0 0 ${Math.max(PAD * 2 + ncols * W + (ncols - 1) * GX, svg.clientWidth || 0)} ${gh}`);
  svg.setAttribute('preserveAspectRatio', 'xMinYMin meet');
  svg.setAttribute('height', gh);
  const nodes = [];
  for (const e of job.edges) {
    const a = pos[e.source], b = pos[e.target];
    if (!a || !b) continue;
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
    nodes.push(svgEl('path', { class: 'edge', d: `M${x1},${y1} C${x1 + GX / 2},${y1} ${x2 - GX / 2},${y2} ${x2},${y2}`, 'marker-end': 'url(#arrow)' }));
    nodes.push(svgEl('text', { class: 'edge-label', x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 4, 'text-anchor': 'middle' }, e.ship_strategy));
  }
  for (const v of job.vertices) {
    const p = pos[v.id];
    const live = ui.live[v.id] || { rate: 0, bp: 0, busy: 0 };
    const g = svgEl('g', { class: 'vertex' + (v.id === ui.vertexId ? ' selected' : ''), 'data-vertex': v.id, 'data-backpressure': live.bp.toFixed(3), transform: `translate(${p.x},${p.y})` });
    g.append(svgEl('rect', { width: W, height: H, fill: bpColour(live.bp) }));
    const name = v.name.length > 32 ? v.name.slice(0, 31) + '…' : v.name;
    g.append(svgEl('text', { x: 10, y: 20, 'font-weight': 600 }, name));
    g.append(svgEl('text', { x: 10, y: 40 }, `parallelism ${v.parallelism} · ${v.status.toLowerCase()}`));
    g.append(svgEl('text', { x: 10, y: 60 }, `${fmtNum(live.rate)} rec/s · busy ${pct(live.busy)} · bp ${pct(live.bp)}`));
    g.append(svgEl('title', {}, `${v.name}\nrecords in ${v.metrics['read-records']}, out ${v.metrics['write-records']}`));
    g.addEventListener('click', () => { ui.vertexId = v.id; refresh(); });
    nodes.push(g);
  }
  const defs = svgEl('defs');
  const marker = svgEl('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' });
  marker.append(svgEl('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: '#8890a0' }));
  defs.append(marker);
  svg.replaceChildren(defs, ...nodes);
}

function drawSubtasks(vd) {
  $('vertex-name').textContent = vd.name;
  setRows($('subtasks').tBodies[0], vd.subtasks.map((s) => {
    const m = s.metrics;
    const wm = m['input-watermark'] !== undefined ? m['input-watermark'] : m['output-watermark'];
    return el('tr', {}, el('td', {}, s.subtask), el('td', {}, s.status), el('td', {}, s.host || '-'), el('td', {}, fmtNum(m['read-records'])),
      el('td', {}, fmtNum(m['write-records'])), el('td', {}, fmtBytes(m['read-bytes'])), el('td', {}, fmtBytes(m['write-bytes'])),
      el('td', {}, fmtDur(m['accumulated-busy-time'])), el('td', {}, fmtDur(m['accumulated-idle-time'])),
      el('td', {}, fmtDur(m['accumulated-backpressured-time'])), el('td', {}, wm !== undefined ? fmtTime(wm) : '-'));
  }));
}

function drawCheckpoints(cps) {
  const c = cps.counts;
  $('cp-counts').textContent = `${c.total} triggered · ${c.completed} completed · ${c.failed} failed · ${c.in_progress} in progress · ${c.restored} restored` +
    (cps.latest.restored ? ` (last from ${cps.latest.restored.external_path})` : '') +
    ` · duration p50 ${fmtDur(cps.summary.end_to_end_duration.p50)}, p99 ${fmtDur(cps.summary.end_to_end_duration.p99)} · size avg ${fmtBytes(cps.summary.state_size.avg)}`;
  setRows($('checkpoints').tBodies[0], cps.history.map((h) => {
    const sel = ui.followLatest ? (cps.latest.completed && h.id === cps.latest.completed.id) : h.id === ui.checkpointId;
    return el('tr', { class: 'clickable' + (sel ? ' selected' : ''), 'data-checkpoint': h.id, onclick: () => { ui.checkpointId = h.id; ui.followLatest = false; refresh(); } },
      el('td', {}, h.id), el('td', {}, h.checkpoint_type.toLowerCase()), el('td', {}, h.status), el('td', {}, fmtTime(h.trigger_timestamp)),
      el('td', {}, fmtDur(h.end_to_end_duration)), el('td', {}, fmtBytes(h.state_size)), el('td', {}, `${h.num_acknowledged_subtasks}/${h.num_subtasks}`),
      el('td', {}, fmtDur(h.alignment_duration)), el('td', {}, h.failure_message || h.external_path || ''));
  }));
}

function drawExceptions(ex) {
  setRows($('exceptions').tBodies[0], ex.exceptionHistory.entries.map((e) => el('tr', {}, el('td', {}, fmtTime(e.timestamp)),
    el('td', { title: e.exceptionName }, e.rootCause), el('td', {}, e.restarted ? 'yes' : 'no'), el('td', {}, e.restoredFrom || '-'))));
}

// drawTimeline draws, for checkpoint cid, one row per subtask: start
// delay, alignment, synchronous and asynchronous part, from the trigger.
async function drawTimeline(job, cid) {
  const id = encodeURIComponent(ui.jobId);
  let det;
  try {
    det = await api('GET', `/jobs/${id}/checkpoints/details/${cid}`);
  } catch (e) {
    $('timeline-title').textContent = `checkpoint ${cid}: ${e.message}`;
    return;
  }
  const per = await Promise.all(job.vertices.map((v) => api('GET', `/jobs/${id}/checkpoints/details/${cid}/subtasks/${encodeURIComponent(v.id)}`)));
  $('timeline-title').textContent = `checkpoint ${cid} (${det.checkpoint_type.toLowerCase()}, ${det.status.toLowerCase()}, ${fmtDur(det.end_to_end_duration)})`;
  const rows = [];
  per.forEach((p, i) => p.subtasks.forEach((s) => rows.push({ label: `${job.vertices[i].name} #${s.index}`, s })));
  let span = 1;
  for (const r of rows) {
    const s = r.s;
    span = Math.max(span, s.end_to_end_duration, s.start_delay + s.alignment.duration + s.checkpoint.sync + s.checkpoint.async);
  }
  const svg = $('timeline');
  const LW = 260, RH = 20, PAD = 8, AX = 22;
  const W = Math.max(700, svg.clientWidth || 1000);
  const scale = (W - LW - PAD * 2) / span;
  const height = PAD * 2 + rows.length * RH + AX;
  svg.setAttribute('viewBox', `0 0 ${W} ${height}`);
  svg.setAttribute('preserveAspectRatio', 'xMinYMin meet');
  svg.setAttribute('height', height);
  const nodes = [];
  for (let k = 0; k <= 4; k++) {
    const x = LW + (k * span / 4) * scale;
    nodes.push(svgEl('line', { x1: x, x2: x, y1: PAD, y2: height - AX, stroke: '#e3e6ec' }));
    const at = k * span / 4;
    nodes.push(svgEl('text', { x, y: height - 6, 'text-anchor': 'middle', class: 'muted' }, span < 40 ? at.toFixed(1) + ' ms' : fmtDur(Math.round(at))));
  }
  rows.forEach((r, i) => {
    const y = PAD + i * RH;
    const s = r.s;
    const g = svgEl('g', { class: 'subtask-row', 'data-status': s.status });
    g.append(svgEl('text', { x: PAD, y: y + 14 }, r.label.length > 38 ? r.label.slice(0, 37) + '…' : r.label));
    let x = 0;
    const parts = [['start', s.start_delay], ['align', s.alignment.duration], ['sync', s.checkpoint.sync], ['async', s.checkpoint.async]];
    if (s.status === 'completed') {
      for (const [cls, d] of parts) {
        const bar = svgEl('rect', { class: cls, x: LW + x * scale, y: y + 3, width: Math.max(1, d * scale), height: RH - 6 });
        bar.append(svgEl('title', {}, `${cls}: ${fmtDur(d)}`));
        g.append(bar);
        x += d;
      }
      const ack = LW + s.end_to_end_duration * scale;
      g.append(svgEl('line', { x1: ack, x2: ack, y1: y + 1, y2: y + RH - 1, stroke: '#1d2330', 'stroke-width': 1.5 }));
    } else {
      g.append(svgEl('text', { x: LW, y: y + 14, class: 'muted' }, 'no acknowledgement'));
    }
    nodes.push(g);
  });
  svg.replaceChildren(...nodes);
}

function showResult(msg, isError) {
  const r = $('action-result');
  r.textContent = msg;
  r.className = isError ? 'error' : '';
}

async function await_(statusPath, what) {
  for (;;) {
    const st = await api('GET', statusPath);
    if (st.status.id === 'COMPLETED') {
      const op = st.operation || {};
      if (op['failure-cause']) throw new Error(op['failure-cause'].message);
      return op;
    }
    showResult(`${what} in progress…`);
    await new Promise((res) => setTimeout(res, 250));
  }
}

// confirmFirst makes a button ask for a second click within 4 s.
function confirmFirst(btn, label, action) {
  btn.addEventListener('click', async () => {
    if (ui.pendingConfirm !== btn) {
      ui.pendingConfirm = btn;
      btn.textContent = 'Click again to ' + label.toLowerCase();
      setTimeout(() => { if (ui.pendingConfirm === btn) { ui.pendingConfirm = null; btn.textContent = label; } }, 4000);
      return;
    }
    ui.pendingConfirm = null;
    btn.textContent = label;
    try { await action(); } catch (e) { showResult(e.message, true); }
  });
}

function wire() {
  const jid = () => encodeURIComponent(ui.jobId);
  $('btn-checkpoint').addEventListener('click', async () => {
    try {
      const r = await api('POST', `/jobs/${jid()}/checkpoints`);
      const op = await await_(`/jobs/${jid()}/checkpoints/${r['request-id']}`, 'checkpoint');
      showResult(`checkpoint ${op.checkpointId} completed`);
      refresh();
    } catch (e) { showResult(e.message, true); }
  });
  $('btn-savepoint').addEventListener('click', async () => {
    try {
      const r = await api('POST', `/jobs/${jid()}/savepoints`, {});
      const op = await await_(`/jobs/${jid()}/savepoints/${r['request-id']}`, 'savepoint');
      showResult(`savepoint ${op.checkpointId} completed: ${op.location}`);
      refresh();
    } catch (e) { showResult(e.message, true); }
  });
  confirmFirst($('btn-stop'), 'Stop with savepoint', async () => {
    const r = await api('POST', `/jobs/${jid()}/stop`, {});
    const op = await await_(`/jobs/${jid()}/savepoints/${r['request-id']}`, 'stop');
    showResult(`stopped with savepoint ${op.checkpointId}: ${op.location}`);
  });
  confirmFirst($('btn-cancel'), 'Cancel', async () => {
    await api('PATCH', `/jobs/${jid()}?mode=cancel`);
    showResult('cancelling');
  });
  $('home').addEventListener('click', () => { location.hash = ''; });
  window.addEventListener('hashchange', route);
  setInterval(refresh, REFRESH_MS);
  route();
}

wire();
