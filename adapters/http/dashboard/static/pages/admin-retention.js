import { html } from 'htm/preact';
import { get } from '../api.js';
import { Loading, When, useLoad } from '../ui.js';

const CATEGORY = {
  request_metadata: 'Request log',
  audit_entries: 'Audit log',
  personal_data: 'Personal data',
  wallet_transactions: 'Wallet transactions',
};
const ACTION = { purge: 'deleted', erase_personal_data: 'erased (key destroyed)', keep: 'kept' };

/** What goes when (the retention plan), and what the last retention run deleted: counts by category, never the data. */
export function RetentionPage() {
  const plan = useLoad(() => get('/admin/retention'), []);
  return html`<${Loading} state=${plan}>${({ items, last_run, check_interval_s }) => html`
    <section aria-labelledby="last-run-heading">
      <h2 id="last-run-heading">Last retention run</h2>
      ${
        last_run === null
          ? html`<p id="last-run">None yet: the gateway runs retention at start-up, daily, and when something comes due.</p>`
          : html`<p id="last-run">
              Run ${last_run.run_id} as of <${When} at=${last_run.as_of} />: ${last_run.request_log_entries_deleted} request-log
              entries and ${last_run.audit_entries_deleted} audit entries deleted; personal data erased for
              ${last_run.personal_data_erased_accounts} ${last_run.personal_data_erased_accounts === 1 ? 'account' : 'accounts'}.
            </p>`
      }
      <p>What is due goes within ${Math.round(check_interval_s / 60)} minutes of its date.</p>
    </section>
    <section aria-labelledby="plan-heading">
      <h2 id="plan-heading">What goes when</h2>
      <table id="retention-table">
        <thead><tr><th scope="col">Category</th><th scope="col">What</th><th scope="col" class="num">Count</th><th scope="col">Goes</th><th scope="col">Action</th></tr></thead>
        <tbody>${items.map(
          (i) => html`<tr>
            <td>${CATEGORY[i.category] ?? i.category}</td><td>${i.subject}</td><td class="num">${i.count ?? '–'}</td>
            <td>${i.expires_at === null ? 'never' : html`<${When} at=${i.expires_at} />${i.due ? ' (due)' : ''}`}</td><td>${ACTION[i.action] ?? i.action}</td>
          </tr>`,
        )}</tbody>
      </table>
    </section>`}<//>`;
}
