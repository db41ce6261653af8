import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { api, del, get, post } from '../api.js';
import { Field, Loading, Message, useAction, useLoad } from '../ui.js';

export function KeysPage({ session }) {
  const keys = useLoad(() => get('/v1/account/keys'));
  const [name, setName] = useState('');
  const [created, setCreated] = useState(null);
  const [confirming, setConfirming] = useState(null);
  const [copied, setCopied] = useState(false);
  const [renaming, setRenaming] = useState(null);
  const action = useAction();
  // A person: their role's keys permission (a viewer sees no create button); a key: its account_write scope.
  const canWrite = session.kind === 'user' ? session.permissions.includes('keys') : session.scopes.includes('account_write');

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
    ${
      canWrite &&
      html`<form onSubmit=${create} class="inline-form">
      <${Field} label="Name of the new key" id="new-key-name" required maxlength="200" value=${name} onInput=${(e) => setName(e.currentTarget.value)} hint="Where it is used, e.g. laptop or CI." />
      <button type="submit" disabled=${action.busy}>Create key</button>
    </form>`
    }
    <${Message} message=${action.message} />
    <${Loading} state=${keys}>${({ data }) => html`<table id="keys-table">
      <thead><tr><th scope="col">Name</th><th scope="col">Prefix</th><th scope="col">Scopes</th><th scope="col">Status</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody>${data.map(
        (k) => html`<tr data-key-id=${k.key_id}>
        <th scope="row">${
          renaming === k.key_id
            ? html`<form class="confirm" onSubmit=${(e) => rename(e, k)}>
              <label for=${`rename-${k.key_id}`} class="visually-hidden">New name for ${k.name}</label>
              <input id=${`rename-${k.key_id}`} name="name" required maxlength="200" value=${k.name} />
              <button type="submit" disabled=${action.busy}>Save</button> <button type="button" class="secondary" onClick=${() => setRenaming(null)}>Cancel</button>
            </form>`
            : k.name
        }</th><td><code>${k.prefix}…</code></td><td>${k.scopes.join(', ')}</td><td>${k.status}${k.key_id === session.key_id ? ' (this session)' : ''}</td>
        <td>${
          canWrite &&
          k.status === 'active' &&
          (confirming === k.key_id
            ? html`<span class="confirm">Revoke ${k.name}? <button type="button" class="danger" onClick=${() => revoke(k)}>Yes, revoke</button> <button type="button" class="secondary" onClick=${() => setConfirming(null)}>Keep it</button></span>`
            : html`<span class="confirm">
                <button type="button" class="secondary" aria-label=${`Rename key ${k.name}`} onClick=${() => setRenaming(k.key_id)}>Rename</button>
                <button type="button" class="secondary" aria-label=${`Revoke key ${k.name}`} onClick=${() => setConfirming(k.key_id)}>Revoke</button>
              </span>`)
        }</td>
      </tr>`,
      )}</tbody>
    </table>`}<//>`;
}
