import { html } from 'htm/preact';
import { get, post, put } from '../api.js';
import { Loading, Message, When, useAction, useLoad } from '../ui.js';

const KIND_WORDS = {
  price_increase: 'Price increases on models you use',
  model_retirement: 'Retirement of models you use',
  maintenance: 'Planned maintenance',
  terms_change: 'Changes to the terms',
  incident: 'Incidents and their updates',
  low_balance: 'Low balance',
  auto_top_up_receipt: 'Automatic top-up receipts',
  auto_top_up_failed: 'Automatic top-up failures',
  suspension: 'Suspension of the account',
  refund: 'Refunds',
};

/** On every customer page: unread notices, each until it is dismissed (marked read). */
export function NoticesBanner() {
  const unread = useLoad(() => get('/v1/account/notices?unread=true&limit=5'));
  if (!unread.data || unread.data.data.length === 0) return null;
  const dismiss = async (notice) => {
    await post(`/v1/account/notices/${encodeURIComponent(notice.id)}/read`).catch(() => {});
    void unread.reload(); // never rejects
  };
  return html`<section class="notices" aria-label="Notices">
    ${unread.data.data.map(
      (n) => html`<div class="notice warn" role="status" key=${n.id}>
        <strong>${n.subject}</strong>
        <p>${n.body}</p>
        <button type="button" class="secondary" aria-label=${`Dismiss notice: ${n.subject}`} onClick=${() => dismiss(n)}>Dismiss</button>
      </div>`,
    )}
    <p><a href="#/notices">All notices</a></p>
  </section>`;
}

export function NoticesPage({ session }) {
  const notices = useLoad(() => get('/v1/account/notices'));
  const preferences = useLoad(() => get('/v1/account/notice-preferences'));
  const action = useAction();
  const canWrite = session.scopes.includes('account_write');
  const toggle = async (kind, enabled) => {
    const done = await action.run(
      () => put('/v1/account/notice-preferences', { kinds: { [kind]: enabled } }),
      `${KIND_WORDS[kind]}: ${enabled ? 'on' : 'off'}.`,
    );
    if (done) void preferences.reload(); // never rejects
  };
  return html`
    <section aria-labelledby="notices-list">
      <h2 id="notices-list">Every notice</h2>
      <${Loading} state=${notices}>
        ${(list) =>
          list.data.length === 0
            ? html`<p>No notices yet.</p>`
            : html`<table id="notices-table">
                <thead><tr><th scope="col">Published</th><th scope="col">Subject</th><th scope="col">Takes effect</th><th scope="col">Read</th></tr></thead>
                <tbody>
                  ${list.data.map(
                    (n) => html`<tr key=${n.id}>
                      <td><${When} at=${n.published_at} /></td>
                      <td><strong>${n.subject}</strong><br />${n.body}</td>
                      <td><${When} at=${n.effective_at} /></td>
                      <td>${n.read ? 'yes' : 'no'}</td>
                    </tr>`,
                  )}
                </tbody>
              </table>`}
      <//>
    </section>
    <section aria-labelledby="notice-preferences">
      <h2 id="notice-preferences">What you are told</h2>
      <p>Notices appear here and are emailed to the account's contact address and to each member with a verified address. Signed in as yourself, these choices are yours alone (other members choose their own); signed in with an API key, they apply to the whole account. Essential ones cannot be turned off.</p>
      <${Message} message=${action.message} />
      <${Loading} state=${preferences}>
        ${(list) => html`<ul class="preferences">
          ${list.data.map(
            (p) => html`<li key=${p.kind}>
              <label>
                <input
                  type="checkbox"
                  checked=${p.enabled}
                  disabled=${p.essential || !canWrite || action.busy}
                  onChange=${(e) => toggle(p.kind, e.currentTarget.checked)}
                />
                ${KIND_WORDS[p.kind] ?? p.kind}${p.essential ? ' (essential)' : ''}
              </label>
            </li>`,
          )}
        </ul>`}
      <//>
    </section>`;
}
