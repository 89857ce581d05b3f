// The operator page: renders the station's snapshots (server-sent events from /api/events)
// and sends stop/start and the operator id. Everything the station sends is set as text,
// never as markup: DUT serials and failure messages come from devices.
'use strict';
(() => {
  const verdicts = {
    idle: 'IDLE', running: 'RUNNING', pass: 'PASS', fail: 'FAIL', error: 'ERROR',
    aborted: 'ABORTED', stopped: 'STOPPED', stopping: 'STOPPING',
  };
  const finished = new Set(['pass', 'fail', 'error', 'aborted']);
  const tiles = new Map(); // slot name -> {el, fields, slot}
  let skew = 0; // the station's clock minus this browser's, in ms

  const $ = (id) => document.getElementById(id);
  const isZero = (t) => !t || t.startsWith('0001-01-01');

  function showAlert(text) {
    const el = $('alert');
    el.textContent = text;
    el.hidden = !text;
  }

  function elapsed(ms) {
    if (!(ms >= 0)) ms = 0;
    const s = Math.floor(ms / 1000);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = String(s % 60).padStart(2, '0');
    return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
  }

  function slotURL(name, action) {
    return `/api/slots/${encodeURIComponent(name)}/${action}`;
  }

  async function post(url, body) {
    const init = { method: 'POST', credentials: 'same-origin' };
    if (body !== undefined) {
      init.headers = { 'Content-Type': 'application/json' };
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(url, init);
    } catch (e) {
      showAlert(`The station did not answer: ${e.message}`);
      return false;
    }
    if (!resp.ok) {
      const text = (await resp.text()).trim();
      showAlert(text || `${resp.status} ${resp.statusText}`);
      return false;
    }
    showAlert('');
    return true;
  }

  function newTile(name) {
    const el = $('tile-template').content.firstElementChild.cloneNode(true);
    el.dataset.slot = name;
    const fields = {};
    for (const f of el.querySelectorAll('[data-field]')) fields[f.dataset.field] = f;
    fields.name.textContent = name;
    fields.action.addEventListener('click', async () => {
      const t = tiles.get(name);
      const action = fields.action.dataset.action;
      fields.action.disabled = true;
      const ok = await post(slotURL(name, action));
      // On success the next snapshot sets the button; on failure it is usable again.
      if (!ok && t) render(t, t.slot);
    });
    const t = { el, fields, slot: null };
    tiles.set(name, t);
    return t;
  }

  function render(t, s) {
    const { el, fields } = t;
    const before = t.slot ? t.slot.state : '';
    t.slot = s;
    const verdict = verdicts[s.state] || s.state.toUpperCase();
    el.dataset.state = s.state;
    el.setAttribute('aria-label', `Slot ${s.name}: ${verdict}`);
    fields.verdict.textContent = verdict;
    fields.dut.textContent = s.dut || '–';
    fields.phase.textContent = s.phase || '–';

    const failed = ['fail', 'error', 'aborted'].includes(s.state);
    fields.failure.hidden = !failed;
    fields.failed_phase.textContent = failed ? (s.failed_phase || 'unknown phase') : '';
    fields.message.textContent = failed ? (s.message || '') : '';

    fields.record.hidden = !s.record_id;
    if (s.record_id) {
      fields.record_href.href = `/records/${encodeURIComponent(s.record_id)}`;
      fields.record_href.textContent = `Record ${s.record_id}`;
    }

    const btn = fields.action;
    if (s.state === 'stopped') {
      btn.dataset.action = 'start'; btn.textContent = 'Start'; btn.disabled = false;
    } else if (s.state === 'stopping') {
      btn.dataset.action = 'stop'; btn.textContent = 'Stopping…'; btn.disabled = true;
    } else {
      btn.dataset.action = 'stop'; btn.textContent = 'Stop'; btn.disabled = false;
    }
    btn.setAttribute('aria-label', `${btn.textContent.replace('…', '')} slot ${s.name}`);
    tick(t);

    if (before && before !== s.state) {
      let words = `Slot ${s.name}: ${verdict}`;
      if (failed && s.failed_phase) words += ` in ${s.failed_phase}`;
      $('announce').textContent = words;
    }
  }

  // tick shows the time on the current DUT: counting while running, frozen once ended.
  function tick(t) {
    const s = t.slot;
    if (!s || isZero(s.started)) { t.fields.elapsed.textContent = '–'; return; }
    const start = Date.parse(s.started);
    const end = isZero(s.ended) ? Date.now() + skew : Date.parse(s.ended);
    t.fields.elapsed.textContent = elapsed(end - start);
  }

  function setCounter(name, text) {
    document.querySelector(`[data-counter="${name}"]`).textContent = text;
  }

  function renderCounters(c) {
    setCounter('passed', String(c.passed));
    setCounter('failed', String(c.failed));
    setCounter('errors', String(c.errors));
    setCounter('aborted', String(c.aborted));
    const done = c.passed + c.failed + c.errors + c.aborted;
    setCounter('yield', done > 0 ? `${(c.yield * 100).toFixed(1)} %` : '–');
    setCounter('duts_per_hour', done > 0 ? c.duts_per_hour.toFixed(1) : '–');
    setCounter('signatures_left', c.signatures_left < 0 ? 'unknown' : String(c.signatures_left));
    setCounter('signer', c.signer || '–');
  }

  function renderRecent(recent) {
    const rows = [];
    for (const r of recent) {
      const tr = document.createElement('tr');
      tr.dataset.record = r.id;
      const cell = (text, cls) => {
        const td = document.createElement('td');
        td.textContent = text;
        if (cls) td.className = cls;
        tr.appendChild(td);
        return td;
      };
      cell(isZero(r.ended) ? '' : new Date(r.ended).toLocaleTimeString());
      cell(r.slot);
      cell(r.dut);
      cell(r.outcome, `outcome-${r.outcome}`);
      const files = cell('');
      const rec = document.createElement('a');
      rec.href = `/records/${encodeURIComponent(r.id)}`;
      rec.textContent = 'record';
      rec.dataset.link = 'record';
      const tr2 = document.createElement('a');
      tr2.href = `/records/${encodeURIComponent(r.id)}/transcript`;
      tr2.textContent = 'transcript';
      tr2.dataset.link = 'transcript';
      files.append(rec, ' · ', tr2);
      rows.push(tr);
    }
    $('recent-rows').replaceChildren(...rows);
  }

  function apply(snap) {
    if (!isZero(snap.now)) skew = Date.parse(snap.now) - Date.now();
    document.title = snap.station ? `hil station ${snap.station}` : 'hil station';
    $('station').textContent = snap.station || '';
    $('operator-current').textContent = `Operator: ${snap.operator || 'none'}`;
    $('operator-current').dataset.operator = snap.operator || '';

    const container = $('slots');
    const seen = new Set();
    const order = [];
    for (const s of snap.slots) {
      seen.add(s.name);
      const t = tiles.get(s.name) || newTile(s.name);
      render(t, s);
      order.push(t.el);
    }
    for (const [name, t] of tiles) {
      if (!seen.has(name)) { t.el.remove(); tiles.delete(name); }
    }
    $('no-slots').hidden = order.length > 0;
    // Reorder only when the order changed: moving a tile would take the focus off its button.
    const current = [...container.children].filter((el) => el.dataset.slot !== undefined);
    if (current.length !== order.length || current.some((el, i) => el !== order[i])) {
      container.replaceChildren($('no-slots'), ...order);
    }

    renderCounters(snap.counters);
    renderRecent(snap.recent);
    document.body.dataset.version = String((Number(document.body.dataset.version) || 0) + 1);
  }

  function connect() {
    const status = $('connection');
    const es = new EventSource('/api/events');
    es.addEventListener('open', () => {
      status.textContent = 'Live';
      status.dataset.connected = 'true';
    });
    es.addEventListener('error', () => {
      status.textContent = 'Reconnecting…';
      status.dataset.connected = 'false';
      // EventSource gives up on an answer other than a stream (a restarting station's 503, a
      // 401 once the token changed): try again on our own, the page reloads to ask for a token.
      if (es.readyState === EventSource.CLOSED) {
        setTimeout(() => fetch('/api/state', { credentials: 'same-origin' })
          .then((r) => { if (r.status === 401) location.reload(); else connect(); })
          .catch(() => connect()), 2000);
      }
    });
    es.addEventListener('snapshot', (e) => apply(JSON.parse(e.data)));
  }

  $('operator-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const input = $('operator-input');
    if (await post('/api/operator', { operator: input.value.trim() })) input.value = '';
  });

  setInterval(() => { for (const t of tiles.values()) tick(t); }, 1000);
  connect();
})();
