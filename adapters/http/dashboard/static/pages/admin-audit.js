import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { get, query } from '../api.js';
import { Field, Loading, When, instantFromLocalInput, useLoad } from '../ui.js';

const EMPTY = { actor: '', action: '', target: '', from: '', to: '' };

export function AuditPage() {
  const [form, setForm] = useState(EMPTY);
  const [filter, setFilter] = useState(EMPTY);
  const audit = useLoad(
    () =>
      get(
        `/admin/audit${query({ actor: filter.actor.trim(), action: filter.action.trim(), target: filter.target.trim(), from: instantFromLocalInput(filter.from), to: instantFromLocalInput(filter.to), limit: 500 })}`,
      ),
    [filter],
  );
  const field = (name, label, extra = {}) =>
    html`<${Field} label=${label} id=${`audit-${name}`} value=${form[name]} onInput=${(e) => setForm({ ...form, [name]: e.currentTarget.value })} ...${extra} />`;
  return html`
    <form class="inline-form" onSubmit=${(e) => {
      e.preventDefault();
      setFilter(form);
    }} aria-label="Filter the audit log">
      ${field('actor', 'Actor', { hint: 'e.g. admin:admin' })}
      ${field('action', 'Action', { hint: 'e.g. account.suspended' })}
      ${field('target', 'Target', { hint: 'e.g. account:acct_…' })}
      ${field('from', 'From (UTC)', { type: 'datetime-local' })}
      ${field('to', 'To (UTC)', { type: 'datetime-local' })}
      <button type="submit">Filter</button>
      <button type="button" class="secondary" onClick=${() => {
        setForm(EMPTY);
        setFilter(EMPTY);
      }}>Clear</button>
    </form>
    <${Loading} state=${audit}>${({ data, chain, has_more }) => html`
      ${
        chain.verified
          ? html`<p class="notice ok" role="status" id="chain-status">Hash chain verified: ${chain.entries} entries, head ${chain.head_entry_no}.</p>`
          : html`<p class="notice error" role="alert" id="chain-status">Hash chain broken at entry ${chain.first_broken_entry_no}: ${chain.message}</p>`
      }
      <p role="status">${data.length} ${data.length === 1 ? 'entry' : 'entries'}${has_more ? ' (more exist: narrow the filter)' : ''}.</p>
      <table id="audit-table">
        <thead><tr><th scope="col">#</th><th scope="col">When</th><th scope="col">Actor</th><th scope="col">Action</th><th scope="col">Target</th><th scope="col">Reason</th></tr></thead>
        <tbody>${data.map(
          (e) => html`<tr>
          <td class="num">${e.entry_no}</td><td><${When} at=${e.occurred_at} /></td><td>${e.actor.kind}:${e.actor.id}</td><td>${e.action}</td><td>${e.target.kind}:${e.target.id}</td><td>${e.reason ?? ''}</td>
        </tr>`,
        )}</tbody>
      </table>`}<//>`;
}
