import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { api, del, get, post } from '../api.js';
import { Field, Loading, Message, Select, When, instantFromLocalInput, useAction, useLoad } from '../ui.js';

export function KeysPage({ session }) {
  const keys = useLoad(() => get('/v1/account/keys'));
  const account = useLoad(() => get('/v1/account'));
  const [name, setName] = useState('');
  const [created, setCreated] = useState(null);
  const [confirming, setConfirming] = useState(null);
  const [copied, setCopied] = useState(false);
  const [renaming, setRenaming] = useState(null);
  const [limiting, setLimiting] = useState(null);
  const action = useAction();
  // A person: their role's keys permission (a viewer sees no create button); a key: its account_write scope.
  const mayWrite = session.kind === 'user' ? session.permissions.includes('keys') : session.scopes.includes('account_write');
  // A closed account's keys are revoked and the API refuses new ones: no forms, only the list.
  // Forms show once the account is known to be open, so none flashes up on a closed one.
  const closed = account.data?.status === 'closed';
  const canWrite = mayWrite && account.data !== null && !closed;

  const create = async (event) => {
    event.preventDefault();
    const issued = await action.run(() => post('/v1/account/keys', { name: name.trim() }));
    if (issued) {
      setCreated(issued);
      setCopied(false);
      setName('');
      void keys.reload(); // never rejects: a failure shows as the list's error
    }
  };
  const revoke = async (key) => {
    const done = await action.run(
      () => del(`/v1/account/keys/${encodeURIComponent(key.key_id)}`),
      `Key ${key.name} (${key.prefix}…) is revoked: requests with it are refused from now on.`,
    );
    setConfirming(null);
    if (done) void keys.reload(); // never rejects: a failure shows as the list's error
  };
  const rename = async (event, key) => {
    event.preventDefault();
    const name = new FormData(event.currentTarget).get('name').trim();
    const done = await action.run(
      () => api('PATCH', `/v1/account/keys/${encodeURIComponent(key.key_id)}`, { name }),
      `Key ${key.prefix}… is now named ${name}.`,
    );
    if (done) {
      setRenaming(null);
      void keys.reload(); // never rejects: a failure shows as the list's error
    }
  };
  const saveLimits = async (event, key) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const period = form.get('period');
    const expires = form.get('expires_at');
    const models = form
      .get('allowed_models')
      .split(',')
      .map((m) => m.trim())
      .filter((m) => m !== '');
    const body = {
      spend_limit: period === 'none' ? null : { period, amount_usd: form.get('amount_usd').trim() },
      expires_at: expires ? instantFromLocalInput(expires) : null,
      allowed_models: models.length > 0 ? models : null,
    };
    const done = await action.run(
      () => api('PATCH', `/v1/account/keys/${encodeURIComponent(key.key_id)}/limits`, body),
      `The limits of key ${key.name} (${key.prefix}…) are saved: they apply from the next request.`,
    );
    if (done) {
      setLimiting(null);
      void keys.reload(); // never rejects: a failure shows as the list's error
    }
  };
  const copy = async () => {
    await navigator.clipboard.writeText(created.key).then(
      () => setCopied(true),
      () => setCopied(false),
    );
  };

  return html`
    ${
      created &&
      html`<section class="secret" aria-labelledby="secret-heading">
      <h2 id="secret-heading">New key “${created.name}”</h2>
      <p><strong>Copy it now: it is shown only once.</strong> Tollgate keeps only a hash of it.</p>
      <div class="secret-row">
        <label for="new-key-secret" class="visually-hidden">The new key</label>
        <input id="new-key-secret" readonly value=${created.key} onFocus=${(e) => e.currentTarget.select()} />
        <button type="button" onClick=${copy}>Copy</button>
        <span role="status">${copied ? 'Copied.' : ''}</span>
      </div>
      <button type="button" class="secondary" onClick=${() => setCreated(null)}>I have stored it</button>
    </section>`
    }
    ${closed && html`<p class="notice" role="status" id="keys-closed">This account is closed: its keys are revoked and no key can be created or changed.</p>`}
    ${
      canWrite &&
      html`<form onSubmit=${create} class="inline-form">
      <${Field} label="Name of the new key" id="new-key-name" required maxlength="200" value=${name} onInput=${(e) => setName(e.currentTarget.value)} hint="Where it is used, e.g. laptop or CI." />
      <button type="submit" disabled=${action.busy}>Create key</button>
    </form>`
    }
    <${Message} message=${action.message} />
    <${Loading} state=${keys}>${({ data }) => html`<table id="keys-table">
      <thead><tr><th scope="col">Name</th><th scope="col">Prefix</th><th scope="col">Scopes</th><th scope="col">Status</th><th scope="col">Limits</th><th scope="col">Created by</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody>${data.map(
        (k) => html`<tr key=${k.key_id} data-key-id=${k.key_id}>
        <th scope="row">${
          renaming === k.key_id
            ? html`<form class="confirm" onSubmit=${(e) => rename(e, k)}>
              <label for=${`rename-${k.key_id}`} class="visually-hidden">New name for ${k.name}</label>
              <input id=${`rename-${k.key_id}`} name="name" required maxlength="200" value=${k.name} />
              <button type="submit" disabled=${action.busy}>Save</button> <button type="button" class="secondary" onClick=${() => setRenaming(null)}>Cancel</button>
            </form>`
            : k.name
        }</th><td><code>${k.prefix}…</code></td><td>${k.scopes.join(', ')}</td><td>${k.status}${k.expired ? ' (expired)' : ''}${k.key_id === session.key_id ? ' (this session)' : ''}</td>
        <td class="limits"><${LimitsSummary} k=${k} /></td><td>${creator(k.created_by)}</td>
        <td>${
          canWrite &&
          k.status === 'active' &&
          (confirming === k.key_id
            ? html`<span class="confirm">Revoke ${k.name}? <button type="button" class="danger" onClick=${() => revoke(k)}>Yes, revoke</button> <button type="button" class="secondary" onClick=${() => setConfirming(null)}>Keep it</button></span>`
            : html`<span class="confirm">
                <button type="button" class="secondary" aria-label=${`Rename key ${k.name}`} onClick=${() => setRenaming(k.key_id)}>Rename</button>
                <button type="button" class="secondary" aria-label=${`Limits of key ${k.name}`} onClick=${() => setLimiting(k.key_id)}>Limits</button>
                <button type="button" class="secondary" aria-label=${`Revoke key ${k.name}`} onClick=${() => setConfirming(k.key_id)}>Revoke</button>
              </span>`)
        }</td>
      </tr>`,
      )}</tbody>
    </table>
    ${data
      .filter((k) => k.key_id === limiting)
      .map((k) => html`<${LimitsForm} k=${k} busy=${action.busy} onSubmit=${(e) => saveLimits(e, k)} onCancel=${() => setLimiting(null)} />`)}`}<//>`;
}

const PERIOD_WORDS = { day: 'a day (UTC)', month: 'a month (UTC)', total: 'in total' };

function creator(createdBy) {
  if (!createdBy) return '—';
  if (createdBy.kind === 'operator') return 'an operator';
  if (createdBy.kind === 'key') return html`key <code>tg_${createdBy.key_id}</code>`;
  return `user ${createdBy.user_id}`;
}

/** What limits a key has, and where it stands in its spend limit's window. */
function LimitsSummary({ k }) {
  const parts = [];
  if (k.spend_limit) {
    const s = k.spend_limit;
    parts.push(
      html`<div>USD ${s.amount_usd} ${PERIOD_WORDS[s.period]}: USD ${s.spent_usd} spent${s.held_usd !== '0.000000' ? html`, USD ${s.held_usd} in flight` : ''}, USD ${s.remaining_usd} left${
        s.resets_at ? html` (resets <${When} at=${s.resets_at} />)` : ''
      }</div>`,
    );
  }
  if (k.expires_at) parts.push(html`<div>${k.expired ? 'Expired' : 'Expires'} <${When} at=${k.expires_at} /></div>`);
  if (k.allowed_models) parts.push(html`<div>Models: ${k.allowed_models.join(', ')}</div>`);
  return parts.length > 0 ? parts : 'none';
}

/** Sets the three limits at once: an empty field clears its limit. */
function LimitsForm({ k, busy, onSubmit, onCancel }) {
  const s = k.spend_limit;
  const [form, setForm] = useState({
    period: s ? s.period : 'none',
    amount_usd: s ? s.amount_usd.replace(/0000$/, '') : '',
    expires_at: k.expires_at ? k.expires_at.slice(0, 16) : '',
    allowed_models: k.allowed_models ? k.allowed_models.join(', ') : '',
  });
  const field = (name) => ({ name, value: form[name], onInput: (e) => setForm({ ...form, [name]: e.currentTarget.value }) });
  return html`<form class="limits-form" id="key-limits-form" onSubmit=${onSubmit} aria-labelledby="limits-heading">
    <h2 id="limits-heading">Limits of key ${k.name} (<code>${k.prefix}…</code>)</h2>
    <${Select}
      label="Spend limit"
      id="limit-period"
      name="period"
      value=${form.period}
      onChange=${(e) => setForm({ ...form, period: e.currentTarget.value })}
      options=${[
        { value: 'none', label: 'No spend limit' },
        { value: 'day', label: 'Per day (UTC)' },
        { value: 'month', label: 'Per month (UTC)' },
        { value: 'total', label: 'In total' },
      ]}
    />
    <${Field} label="Limit (USD, whole cents)" id="limit-amount" inputmode="decimal" ...${field('amount_usd')} hint="For example 25.00. Requests past it are refused with 429 key_spend_limit_reached." />
    <${Field} label="Expires at (UTC)" id="limit-expires" type="datetime-local" ...${field('expires_at')} hint="Empty: never expires." />
    <${Field} label="Allowed models" id="limit-models" ...${field('allowed_models')} hint="Model ids separated by commas. Empty: every model." />
    <button type="submit" disabled=${busy}>Save limits</button> <button type="button" class="secondary" onClick=${onCancel}>Cancel</button>
  </form>`;
}
