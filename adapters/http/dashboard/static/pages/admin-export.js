import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { get, query } from '../api.js';
import { Field, Message, useAction } from '../ui.js';

/** For compliance staff: `tollgate export` over HTTP, for a data-access request. Recorded as a view of personal data, with the purpose. */
export function ExportPage() {
  const [form, setForm] = useState({ account: '', purpose: '' });
  const [exported, setExported] = useState(null);
  const action = useAction();
  const submit = async (event) => {
    event.preventDefault();
    setExported(null);
    const answer = await action.run(() =>
      get(`/admin/compliance/exports/${encodeURIComponent(form.account.trim())}${query({ purpose: form.purpose.trim() })}`),
    );
    if (answer) setExported(answer);
  };
  const download = () => {
    const url = URL.createObjectURL(new Blob([JSON.stringify(exported, null, 2)], { type: 'application/json' }));
    const link = Object.assign(document.createElement('a'), { href: url, download: `tollgate-export-${exported.account_id}.json` });
    link.click();
    URL.revokeObjectURL(url);
  };
  return html`
    <p>Everything held about an account and its people, for a data-access request. The export is recorded in the audit log with you as the actor and the purpose as the reason.</p>
    <form onSubmit=${submit}>
      <${Field} label="Account id" id="export-account" required value=${form.account} onInput=${(e) => setForm({ ...form, account: e.currentTarget.value })} />
      <${Field} label="Purpose" id="export-purpose" maxlength="200" hint="e.g. data-access request #123" value=${form.purpose} onInput=${(e) => setForm({ ...form, purpose: e.currentTarget.value })} />
      <button type="submit" disabled=${action.busy}>Export</button>
    </form>
    <${Message} message=${action.message} />
    ${
      exported &&
      html`<section aria-labelledby="export-heading">
        <h2 id="export-heading">Export of ${exported.account_id}</h2>
        <p id="export-summary" role="status">
          ${exported.personal_data?.display_name ?? '(erased)'} · ${exported.ledger_events?.length ?? 0} ledger events · ${exported.keys?.length ?? 0} keys · exported ${exported.exported_at}
        </p>
        <button type="button" onClick=${download}>Download JSON</button>
      </section>`
    }`;
}
