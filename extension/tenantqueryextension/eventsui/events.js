// The GPU events page: the tenant's XID records, read from the gateway's
// LogsQL API (/select/logsql/query) with the browser's session cookie. The
// gateway holds every query to the signed-in tenant; this page only filters
// within it. Records are customer data: they go into the page as text
// (textContent), never as HTML.
(function () {
  'use strict';

  const RECORDS_LIMIT = 500;
  const SUMMARY_LIMIT = 1000;
  const DEFAULT_RANGE = '24h';

  const params = new URLSearchParams(window.location.search);

  // The page's filters: URL parameter, what the page calls it, and the
  // LogsQL filter it becomes.
  const FILTERS = [
    { param: 'host', label: 'VM', query: (v) => 'host.name:=' + quote(v) },
    { param: 'gpu', label: 'GPU', query: (v) => '(hw.id:=' + quote(v) + ' or hw.name:=' + quote(v) + ')' },
    { param: 'xid', label: 'XID', query: (v) => 'nvidia.xid.code:=' + quote(v) },
  ];

  // quote makes a LogsQL string literal of any value: double quotes, with
  // quotes, backslashes and control characters escaped (JSON's escapes are
  // the store's too), so no value can end the literal or add a filter.
  function quote(value) {
    return JSON.stringify(String(value));
  }

  // logsql is the query of XID records matching the page's filters.
  function logsql() {
    const parts = ['nvidia.xid.code:*'];
    for (const f of FILTERS) {
      const v = params.get(f.param);
      if (v !== null && v !== '') {
        parts.push(f.query(v));
      }
    }
    return parts.join(' ');
  }

  const UNITS = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3 };

  // instant turns the page's start/end into what the store takes: a
  // duration back from now ("24h") becomes an RFC 3339 time, so that every
  // query of the page covers the same range; anything else (RFC 3339, Unix
  // seconds) goes as given.
  function instant(value, now) {
    const m = /^(\d{1,6})([smhdw])$/.exec(value);
    if (m) {
      return new Date(now - Number(m[1]) * UNITS[m[2]]).toISOString();
    }
    return value;
  }

  function range() {
    const now = Date.now();
    const start = params.get('start') || DEFAULT_RANGE;
    const end = params.get('end');
    return {
      start: instant(start, now),
      end: end ? instant(end, now) : new Date(now).toISOString(),
      label: params.get('end') ? start + ' to ' + end : (/^\d+[smhdw]$/.test(start) ? 'last ' + start : 'since ' + start),
      relative: !params.get('end') && /^\d+[smhdw]$/.test(start) ? start : '',
    };
  }

  // href is this page's address with one parameter set (or removed).
  function href(changes) {
    const p = new URLSearchParams(window.location.search);
    for (const [k, v] of Object.entries(changes)) {
      if (v === null) {
        p.delete(k);
      } else {
        p.set(k, v);
      }
    }
    const s = p.toString();
    return window.location.pathname + (s ? '?' + s : '');
  }

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'text') {
        e.textContent = v;
      } else {
        e.setAttribute(k, v);
      }
    }
    for (const c of children) {
      e.append(c);
    }
    return e;
  }

  function link(text, changes, cls) {
    const a = el('a', { href: href(changes), text: String(text) });
    if (cls) {
      a.className = cls;
    }
    return a;
  }

  function setStatus(text, isError) {
    const s = document.getElementById('status');
    s.textContent = text;
    s.classList.toggle('error', Boolean(isError));
    s.hidden = text === '';
  }

  // query asks the gateway's LogsQL endpoint and returns its records (one
  // JSON object a line). A lost session goes back to the login page.
  async function query(q, r, limit) {
    const p = new URLSearchParams({ query: q, start: r.start, end: r.end, limit: String(limit) });
    const resp = await fetch('/select/logsql/query?' + p.toString(), {
      credentials: 'same-origin',
      headers: { Accept: 'application/json' },
    });
    if (resp.status === 401) {
      window.location.assign('/login');
      throw new Error('signed out');
    }
    const body = await resp.text();
    if (!resp.ok) {
      let msg = body;
      try {
        const j = JSON.parse(body);
        msg = j.error || j.message || body;
      } catch (_) { /* the store's plain-text error */ }
      throw new Error('The events could not be read (' + resp.status + '): ' + String(msg).slice(0, 300));
    }
    const out = [];
    for (const line of body.split('\n')) {
      if (line.trim() !== '') {
        out.push(JSON.parse(line));
      }
    }
    return out;
  }

  function byCount(a, b) {
    return b.n - a.n || String(a.key).localeCompare(String(b.key), undefined, { numeric: true });
  }

  // summarize folds the per-(VM, GPU, code) counts into the three tables.
  function summarize(rows) {
    const vms = new Map();
    const gpus = new Map();
    const xids = new Map();
    let total = 0;
    for (const row of rows) {
      const n = Number(row.n) || 0;
      total += n;
      const host = row['host.name'] || '';
      const id = row['hw.id'] || '';
      const name = row['hw.name'] || '';
      const code = row['nvidia.xid.code'] || '';
      const add = (m, key, init) => {
        const cur = m.get(key) || Object.assign({ key: key, n: 0 }, init);
        cur.n += n;
        m.set(key, cur);
      };
      add(vms, host, {});
      add(gpus, id || name, { host: host, id: id, name: name });
      add(xids, code, { description: row['nvidia.xid.description'] || '' });
    }
    return {
      total: total,
      vms: [...vms.values()].sort(byCount),
      gpus: [...gpus.values()].sort(byCount),
      xids: [...xids.values()].sort(byCount),
    };
  }

  function fillSummary(id, items, cells) {
    const tbody = document.querySelector('#' + id + ' tbody');
    tbody.replaceChildren();
    for (const it of items) {
      const tr = el('tr');
      for (const c of cells(it)) {
        tr.append(el('td', {}, c));
      }
      tbody.append(tr);
    }
    if (items.length === 0) {
      tbody.append(el('tr', {}, el('td', { text: 'none' })));
    }
  }

  function gpuCell(name, id) {
    const span = el('span', { class: 'gpu' });
    span.append(el('span', { text: name || id || '?' }));
    if (id && id !== name) {
      span.append(el('span', { class: 'id', text: id }));
    }
    return span;
  }

  // time shows a record's _time (RFC 3339, UTC) to the second.
  function time(t) {
    const m = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)/.exec(String(t || ''));
    return m ? m[1] + ' ' + m[2] : String(t || '');
  }

  function renderFilters(r) {
    const box = document.getElementById('filters');
    box.replaceChildren();
    for (const f of FILTERS) {
      const v = params.get(f.param);
      if (v === null || v === '') {
        continue;
      }
      const chip = el('span', { class: 'chip' }, el('span', { text: f.label + ': ' + v }));
      const x = link('\u00d7', { [f.param]: null }, 'remove');
      x.setAttribute('title', 'Remove this filter');
      x.setAttribute('aria-label', 'Remove the ' + f.label + ' filter');
      chip.append(x);
      box.append(chip);
    }
    for (const a of document.querySelectorAll('#ranges a')) {
      a.setAttribute('href', href({ start: a.dataset.range, end: null }));
      a.classList.toggle('active', a.dataset.range === r.relative);
    }
    document.getElementById('scope').textContent =
      'XID errors reported by the NVIDIA driver on your VMs, ' + r.label + ' (' + time(r.start) + ' to ' + time(r.end) + ' UTC).';
  }

  function renderSummary(s) {
    fillSummary('by-vm', s.vms, (it) => [el('span', { text: it.key || '(no VM name)' }), link(it.n, { host: it.key }, 'count')]);
    fillSummary('by-gpu', s.gpus, (it) => [
      gpuCell(it.name, it.id), el('span', { class: 'muted', text: it.host }), link(it.n, { gpu: it.id || it.name }, 'count'),
    ]);
    fillSummary('by-xid', s.xids, (it) => [
      el('span', { class: 'code', text: it.key }), el('span', { text: it.description }), link(it.n, { xid: it.key }, 'count'),
    ]);
    document.getElementById('summary').hidden = false;
  }

  function renderRecords(records, total) {
    const tbody = document.querySelector('#records tbody');
    tbody.replaceChildren();
    for (const rec of records) {
      const sev = String(rec.severity_text || '');
      const tr = el('tr');
      tr.append(
        el('td', { class: 'time', text: time(rec._time) }),
        el('td', {}, link(rec['host.name'] || '', { host: rec['host.name'] || '' })),
        el('td', {}, rec['hw.id'] || rec['hw.name']
          ? el('a', { href: href({ gpu: rec['hw.id'] || rec['hw.name'] }) }, gpuCell(rec['hw.name'], rec['hw.id']))
          : el('span', { text: '' })),
        el('td', { class: 'code' }, link(rec['nvidia.xid.code'] || '', { xid: rec['nvidia.xid.code'] || '' })),
        el('td', { text: rec['nvidia.xid.description'] || rec._msg || '' }),
        el('td', {}, el('span', { class: 'sev sev-' + sev.toLowerCase().replace(/[^a-z]/g, ''), text: sev })),
      );
      tbody.append(tr);
    }
    let title = 'Records';
    if (total > records.length) {
      title += ' (the newest ' + records.length + ' of ' + total + ')';
    } else {
      title += ' (' + records.length + ')';
    }
    document.getElementById('records-title').textContent = title;
    document.getElementById('records-section').hidden = false;
  }

  async function load() {
    const r = range();
    renderFilters(r);
    const q = logsql();
    try {
      const [stats, records] = await Promise.all([
        query(q + ' | stats by (host.name, hw.id, hw.name, nvidia.xid.code, nvidia.xid.description) count() n', r, SUMMARY_LIMIT),
        query(q + ' | sort by (_time desc) | fields _time, host.name, hw.id, hw.name, nvidia.xid.code, nvidia.xid.description, severity_text, _msg', r, RECORDS_LIMIT),
      ]);
      const s = summarize(stats);
      if (s.total === 0 && records.length === 0) {
        setStatus('No XID errors in this time range.', false);
        document.getElementById('summary').hidden = true;
        document.getElementById('records-section').hidden = true;
        return;
      }
      setStatus('', false);
      renderSummary(s);
      renderRecords(records, Math.max(s.total, records.length));
    } catch (err) {
      setStatus(String(err && err.message ? err.message : err), true);
    }
  }

  document.addEventListener('DOMContentLoaded', load);
})();
