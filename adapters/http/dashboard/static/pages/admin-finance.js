import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { get, query } from '../api.js';
import { Field, Loading, Message, When, useAction, useLoad } from '../ui.js';

/** For finance staff: `tollgate verify` and `tollgate journal` over HTTP. */
export function FinancePage() {
  const action = useAction();
  const [report, setReport] = useState(null);
  const [period, setPeriod] = useState({ from: '', to: '' });
  const [shown, setShown] = useState({ from: '', to: '' });
  const journal = useLoad(() => get(`/admin/finance/journal${query(shown)}`), [shown.from, shown.to]);
  const verify = async () => {
    const answer = await action.run(() => get('/admin/finance/verification'));
    if (answer) setReport(answer);
  };
  return html`
    <section aria-labelledby="verify-heading">
      <h2 id="verify-heading">Verification</h2>
      <p>Recomputes every balance from its events and compares it with the projections; checks the journal's trial balance and reservations past their deadline.</p>
      <button type="button" id="verify" onClick=${verify} disabled=${action.busy}>Verify now</button>
      <${Message} message=${action.message} />
      ${
        report &&
        html`<p id="verify-result" role="status">
          ${report.ok ? `OK: ${report.accounts} accounts, ${report.events} events: balances, journal and reservations agree.` : `${report.differences.length} difference(s) found.`}
        </p>
        ${
          report.differences.length > 0 &&
          html`<ul id="verify-differences">${report.differences.map((d) => html`<li>${d.check} · ${d.account_id ?? '—'} · ${d.detail}</li>`)}</ul>`
        }`
      }
    </section>
    <section aria-labelledby="journal-heading">
      <h2 id="journal-heading">Journal</h2>
      <form onSubmit=${(e) => {
        e.preventDefault();
        setShown(period);
      }}>
        <${Field} label="From (date, inclusive)" id="journal-from" type="date" value=${period.from} onInput=${(e) => setPeriod({ ...period, from: e.currentTarget.value })} />
        <${Field} label="To (date, exclusive)" id="journal-to" type="date" value=${period.to} onInput=${(e) => setPeriod({ ...period, to: e.currentTarget.value })} />
        <button type="submit">Show</button>
      </form>
      <${Loading} state=${journal}>${({ data }) => html`
        <table id="journal-table">
          <thead><tr><th scope="col">When</th><th scope="col">Event</th><th scope="col">Customer account</th><th scope="col">Ledger account</th><th scope="col" class="num">Debit USD</th><th scope="col" class="num">Credit USD</th></tr></thead>
          <tbody>${data.map(
            (l) => html`<tr><td><${When} at=${l.occurred_at} /></td><td>${l.event_type}</td><td>${l.customer_account}</td><td>${l.ledger_account}</td>
              <td class="num">${l.debit_usd ?? ''}</td><td class="num">${l.credit_usd ?? ''}</td></tr>`,
          )}</tbody>
        </table>
        ${data.length === 0 && html`<p>No postings in this period.</p>`}`}<//>
    </section>`;
}
