// The GPU alerts page: the tenant's firing alerts, rules (the default pack
// and its own), receivers and silences, read and changed through
// /alerting/v1/ with the browser's session. Everything shown comes from the
// API and is customer data: it goes into the page as text only.
'use strict';

(() => {
  const API = '/alerting/v1/';
  const REFRESH_MS = 10000;
  const $ = (id) => document.getElementById(id);

  // call is one API call: the envelope's data, or an Error with the API's
  // own words (a 400 says what was wrong).
  async function call(method, path, body) {
    const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(API + path, init);
    } catch (e) {
      throw new Error('The gateway did not answer: ' + e.message);
    }
    if (resp.status === 401) {
      // The session ended: the page itself sends the browser to sign in.
      window.location.assign('/alerts/');
      throw new Error('Signed out.');
    }
    let env = null;
    try {
      env = await resp.json();
    } catch (e) {
      env = null;
    }
    if (!resp.ok || !env || env.status !== 'success') {
      const err = new Error(env && env.error ? env.error : 'HTTP ' + resp.status);
      err.status = resp.status;
      throw err;
    }
    return env.data;
  }

  // el makes an element with text (never markup) and classes.
  function el(tag, text, className) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (className) e.className = className;
    return e;
  }

  function td(tr, text, className) {
    const c = el('td', text, className);
    tr.appendChild(c);
    return c;
  }

  function button(label, id, onClick) {
    const b = el('button', label);
    b.type = 'button';
    if (id) b.id = id;
    b.addEventListener('click', async () => {
      b.disabled = true;
      try {
        await onClick();
      } finally {
        b.disabled = false;
      }
    });
    return b;
  }

  // label is the first of names set on labels (vmalert hands Alertmanager
  // hw.id as hw_id): [name, value], or null.
  function label(labels, ...names) {
    for (const n of names) {
      if (labels && typeof labels[n] === 'string' && labels[n] !== '') return [n, labels[n]];
    }
    return null;
  }

  function when(s) {
    const d = new Date(s);
    if (Number.isNaN(d.getTime()) || d.getUTCFullYear() < 2000) return '';
    return d.toISOString().replace('T', ' ').slice(0, 19);
  }

  function severityCell(tr, sev) {
    const c = td(tr);
    if (sev) c.appendChild(el('span', sev, 'sev ' + (/^[a-z]+$/.test(sev) ? sev : '')));
    return c;
  }

  function slug(s) {
    return String(s).replace(/[^A-Za-z0-9_-]/g, '_');
  }

  // setStatus says what the customer's last action did (it stays until
  // the next one); refresh's own word replaces only its own.
  function setStatus(text, error, auto) {
    const s = $('status');
    s.textContent = text;
    s.classList.toggle('error', !!error);
    s.dataset.auto = auto ? '1' : '0';
  }

  function showProblem(id, text) {
    const p = $(id);
    p.textContent = text || '';
    p.hidden = !text;
  }

  // Firing alerts.

  async function loadAlerts() {
    const alerts = await call('GET', 'alerts');
    alerts.sort((a, b) => String(a.startsAt).localeCompare(String(b.startsAt)));
    const tbody = $('firing').querySelector('tbody');
    tbody.replaceChildren();
    for (const a of alerts) {
      const labels = a.labels || {};
      const ann = a.annotations || {};
      const name = labels.alertname || '';
      const tr = el('tr');
      tr.dataset.alert = name;
      td(tr, name, 'name');
      severityCell(tr, labels.severity);
      const gpu = td(tr);
      const hwName = label(labels, 'hw.name', 'hw_name');
      const hwID = label(labels, 'hw.id', 'hw_id');
      if (hwName || hwID) {
        const g = el('span', null, 'gpu');
        if (hwName) g.appendChild(el('span', hwName[1]));
        if (hwID) g.appendChild(el('span', hwID[1], 'id'));
        gpu.appendChild(g);
      }
      const host = label(labels, 'host.name', 'host_name');
      td(tr, host ? host[1] : '');
      td(tr, ann.summary || ann.description || '');
      td(tr, when(a.startsAt), 'time');
      const silenced = a.state === 'suppressed' || (a.silencedBy && a.silencedBy.length > 0);
      const state = silenced ? 'silenced' : a.state === 'active' ? 'firing' : a.state || '';
      td(tr, state, 'state ' + (silenced ? 'suppressed' : slug(a.state || '')));
      const actions = td(tr);
      if (!silenced && name) {
        actions.appendChild(button('Silence 1h', null, () => silence(name, hwID)));
      }
      tbody.appendChild(tr);
    }
    $('firing-empty').hidden = alerts.length > 0;
    $('firing').hidden = alerts.length === 0;
    const firing = alerts.filter((a) => a.state === 'active').length;
    $('firing-count').textContent = alerts.length ? '(' + firing + ' firing, ' + (alerts.length - firing) + ' silenced)' : '';
  }

  async function silence(name, hwID) {
    const matchers = [{ name: 'alertname', value: name, isRegex: false }];
    if (hwID) matchers.push({ name: hwID[0], value: hwID[1], isRegex: false });
    try {
      await call('POST', 'silences', { matchers, duration: '1h', comment: 'silenced for 1h from the alerts page' });
      showProblem('silence-error', '');
      setStatus('Silenced ' + name + (hwID ? ' on ' + hwID[1] : '') + ' for 1 hour.');
    } catch (e) {
      showProblem('silence-error', 'Could not silence ' + name + ': ' + e.message);
    }
    await refresh(loadAlerts, loadSilences);
  }

  // Rules.

  function stateOf(engine, name) {
    const r = (engine || []).find((x) => x.name === name);
    if (!r) return ['not loaded yet', 'inactive'];
    if (r.health && r.health !== 'ok') return ['error: ' + (r.lastError || r.health), 'bad'];
    return [r.state || 'inactive', slug(r.state || 'inactive')];
  }

  async function loadRules() {
    const data = await call('GET', 'rules');
    const engine = data.engine || {};
    const limits = data.limits || {};
    const notes = [];
    if (limits.evaluation_interval) notes.push('Every rule is evaluated every ' + limits.evaluation_interval + '.');
    if (limits.max_rules) notes.push('You may have up to ' + limits.max_rules + ' rules of your own.');
    if (data.engine_error) notes.push(data.engine_error);
    $('rules-note').textContent = notes.join(' ');

    const pack = $('pack').querySelector('tbody');
    pack.replaceChildren();
    for (const r of data.pack || []) {
      const tr = el('tr');
      tr.dataset.rule = r.name;
      td(tr, r.name, 'name').title = r.expr || '';
      td(tr, r.for || '0s');
      severityCell(tr, (r.labels || {}).severity);
      td(tr, r.reason || '');
      td(tr, r.action || '');
      const [text, cls] = stateOf(engine.pack, r.name);
      td(tr, text, 'state ' + cls);
      pack.appendChild(tr);
    }

    const own = $('rules').querySelector('tbody');
    own.replaceChildren();
    const rules = data.rules || [];
    for (const r of rules) {
      const tr = el('tr');
      tr.dataset.rule = r.name;
      td(tr, r.name, 'name');
      td(tr, r.expr, 'expr');
      td(tr, r.for || '0s');
      severityCell(tr, (r.labels || {}).severity);
      td(tr, (r.annotations || {}).summary || '');
      const [text, cls] = stateOf(engine.custom, r.name);
      td(tr, text, 'state ' + cls);
      td(tr).appendChild(button('Delete', 'delete-rule-' + slug(r.name), async () => {
        try {
          await call('DELETE', 'rules/' + encodeURIComponent(r.name));
          setStatus('Rule ' + r.name + ' deleted.');
        } catch (e) {
          setStatus('Could not delete rule ' + r.name + ': ' + e.message, true);
        }
        await refresh(loadRules, loadAlerts);
      }));
      own.appendChild(tr);
    }
    $('rules-empty').hidden = rules.length > 0;
    $('rules').hidden = rules.length === 0;
  }

  async function addRule(ev) {
    ev.preventDefault();
    const name = $('rule-name').value.trim();
    const body = { expr: $('rule-expr').value.trim(), labels: { severity: $('rule-severity').value } };
    const forValue = $('rule-for').value.trim();
    if (forValue) body.for = forValue;
    const summary = $('rule-summary').value.trim();
    if (summary) body.annotations = { summary };
    const submit = $('rule-add');
    submit.disabled = true;
    try {
      await call('PUT', 'rules/' + encodeURIComponent(name), body);
      showProblem('rule-error', '');
      $('rule-form').reset();
      setStatus('Rule ' + name + ' saved; it is evaluated from now on.');
    } catch (e) {
      showProblem('rule-error', e.message);
      return;
    } finally {
      submit.disabled = false;
    }
    await refresh(loadRules);
  }

  // Receivers.

  async function loadReceivers() {
    const receivers = await call('GET', 'receivers');
    const tbody = $('receivers').querySelector('tbody');
    tbody.replaceChildren();
    for (const r of receivers) {
      const tr = el('tr');
      tr.dataset.receiver = r.name;
      td(tr, r.name, 'name');
      td(tr, r.type);
      td(tr, r.url, 'expr');
      td(tr, when(r.created), 'time');
      td(tr).appendChild(button('Delete', 'delete-receiver-' + slug(r.name), async () => {
        try {
          await call('DELETE', 'receivers/' + encodeURIComponent(r.name));
          setStatus('Receiver ' + r.name + ' deleted.');
        } catch (e) {
          setStatus('Could not delete receiver ' + r.name + ': ' + e.message, true);
        }
        await refresh(loadReceivers);
      }));
      tbody.appendChild(tr);
    }
    $('receivers-empty').hidden = receivers.length > 0;
    $('receivers').hidden = receivers.length === 0;
  }

  async function addReceiver(ev) {
    ev.preventDefault();
    const name = $('receiver-name').value.trim();
    const body = { type: $('receiver-type').value, url: $('receiver-url').value.trim() };
    const submit = $('receiver-add');
    submit.disabled = true;
    let data;
    try {
      data = await call('PUT', 'receivers/' + encodeURIComponent(name), body);
      showProblem('receiver-error', '');
      $('receiver-form').reset();
      setStatus('Receiver ' + name + ' saved.');
    } catch (e) {
      showProblem('receiver-error', e.message);
      return;
    } finally {
      submit.disabled = false;
    }
    // A webhook's signing secret comes in this answer only.
    if (data && data.secret) {
      $('receiver-secret-name').textContent = name;
      $('receiver-secret-value').textContent = data.secret;
      $('receiver-secret').hidden = false;
    }
    await refresh(loadReceivers);
  }

  function hideSecret() {
    $('receiver-secret-value').textContent = '';
    $('receiver-secret-name').textContent = '';
    $('receiver-secret').hidden = true;
  }

  // Silences.

  async function loadSilences() {
    const silences = (await call('GET', 'silences')).filter((s) => !s.status || s.status.state !== 'expired');
    silences.sort((a, b) => String(a.endsAt).localeCompare(String(b.endsAt)));
    const tbody = $('silences').querySelector('tbody');
    tbody.replaceChildren();
    for (const s of silences) {
      const tr = el('tr');
      tr.dataset.silence = s.id;
      const m = (s.matchers || []).map((x) => x.name + (x.isEqual === false ? '!' : '') + (x.isRegex ? '=~' : '=') + JSON.stringify(x.value));
      td(tr, m.join(', '), 'expr');
      td(tr, when(s.endsAt), 'time');
      td(tr, s.comment || '');
      td(tr, s.createdBy || '');
      const state = s.status ? s.status.state : '';
      td(tr, state, 'state ' + slug(state));
      td(tr).appendChild(button('Expire', 'expire-silence-' + slug(s.id), async () => {
        try {
          await call('DELETE', 'silences/' + encodeURIComponent(s.id));
          showProblem('silence-error', '');
          setStatus('Silence expired.');
        } catch (e) {
          showProblem('silence-error', 'Could not expire the silence: ' + e.message);
        }
        await refresh(loadSilences, loadAlerts);
      }));
      tbody.appendChild(tr);
    }
    $('silences-empty').hidden = silences.length > 0;
    $('silences').hidden = silences.length === 0;
  }

  // refresh runs loaders side by side and says how it went.
  async function refresh(...loaders) {
    const results = await Promise.allSettled(loaders.map((l) => l()));
    const failed = results.filter((r) => r.status === 'rejected');
    if (failed.length) {
      setStatus('Could not load everything: ' + failed[0].reason.message, true, true);
    } else if ($('status').dataset.auto !== '0') {
      setStatus('Updated ' + when(new Date().toISOString()) + ' UTC; firing alerts refresh every ' + REFRESH_MS / 1000 + ' s.', false, true);
    }
  }

  function init() {
    $('rule-form').addEventListener('submit', addRule);
    $('receiver-form').addEventListener('submit', addReceiver);
    $('receiver-secret-done').addEventListener('click', hideSecret);
    refresh(loadAlerts, loadRules, loadReceivers, loadSilences);
    window.setInterval(() => {
      if (!document.hidden) refresh(loadAlerts, loadRules);
    }, REFRESH_MS);
  }

  init();
})();
