import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { get, post, query } from '../api.js';
import { decimalFromInput, usd } from '../money.js';
import { AccountBanner } from './balance.js';
import { Field, Loading, Message, Select, Stat, When, instantFromLocalInput, useAction, useLoad } from '../ui.js';

const SUSPENSION_REASONS = ['terms_violation', 'payment_dispute', 'customer_request', 'negative_balance', 'auto_top_up_failed'].map((r) => ({
  value: r,
  label: r.replaceAll('_', ' '),
}));

export function AccountsPage({ params }) {
  const selected = params.get('id');
  const [text, setText] = useState(params.get('q') ?? '');
  const [q, setQ] = useState(params.get('q') ?? '');
  const results = useLoad(() => get(`/admin/accounts${query({ q, limit: 50 })}`), [q]);
  const search = (event) => {
    event.preventDefault();
    setQ(text.trim());
  };
  return html`
    <form role="search" onSubmit=${search} class="inline-form">
      <${Field} label="Search accounts" id="account-search" type="search" value=${text} onInput=${(e) => setText(e.currentTarget.value)} hint="Part of an account id, a name or an email address." />
      <button type="submit">Search</button>
    </form>
    <${Loading} state=${results}>${({ data }) =>
      data.length === 0
        ? html`<p role="status">No account matches.</p>`
        : html`<table id="accounts-table">
            <caption class="visually-hidden">Accounts found</caption>
            <thead><tr><th scope="col">Account</th><th scope="col">Name</th><th scope="col">Email</th><th scope="col">Status</th><th scope="col" class="num">Available</th></tr></thead>
            <tbody>${data.map(
              (a) => html`<tr key=${a.account_id}>
              <th scope="row"><a href=${`#/accounts${query({ q, id: a.account_id })}`} aria-current=${a.account_id === selected ? 'true' : undefined}>${a.account_id}</a></th>
              <td>${a.display_name ?? '(erased)'}</td><td>${a.email ?? '(erased)'}</td>
              <td>${a.status}${a.suspension_reason ? ` (${a.suspension_reason.replaceAll('_', ' ')})` : ''}</td><td class="num">${usd(a.available_usd)}</td>
            </tr>`,
            )}</tbody>
          </table>`}<//>
    ${selected && html`<${AccountDetail} accountId=${selected} key=${selected} onChanged=${results.reload} />`}`;
}

function AccountDetail({ accountId, onChanged }) {
  const id = encodeURIComponent(accountId);
  const account = useLoad(() => Promise.all([get(`/admin/accounts/${id}`), get(`/admin/accounts/${id}/statement`)]));
  const action = useAction();
  const [reason, setReason] = useState(SUSPENSION_REASONS[0].value);
  const [promo, setPromo] = useState({ amount: '', expires: '', reason: '' });
  const [refund, setRefund] = useState({ amount: '', reason: '' });

  // Every action is the admin API's own endpoint: the same deciders, audited with this admin as actor.
  const act = async (call, success) => {
    const done = await action.run(call, success);
    if (done) {
      // Both loads never reject: a failure shows as their own error state.
      void account.reload();
      void onChanged();
    }
    return done;
  };
  const grant = (event) => {
    event.preventDefault();
    const amount = decimalFromInput(promo.amount);
    if (amount === null) return action.setMessage({ kind: 'error', text: 'Enter the promo amount in dollars, such as 5.00.' });
    return act(
      () => post(`/admin/accounts/${id}/promo-grants`, { amount_usd: amount, expires_at: instantFromLocalInput(promo.expires), reason: promo.reason }),
      `Granted ${usd(amount)} of promotional credit.`,
    ).then((done) => done && setPromo({ amount: '', expires: '', reason: '' }));
  };
  const issueRefund = (event) => {
    event.preventDefault();
    const amount = refund.amount.trim() === '' ? undefined : decimalFromInput(refund.amount);
    if (amount === null)
      return action.setMessage({ kind: 'error', text: 'Enter the refund in dollars and cents, or leave it empty to refund everything refundable.' });
    return act(
      () => post(`/admin/accounts/${id}/refunds`, { ...(amount ? { amount_usd: amount } : {}), reason: refund.reason }),
      (r) => `Refund ${r.refund_id}: ${usd(r.refunded_usd)} refunded.`,
    ).then((done) => done && setRefund({ amount: '', reason: '' }));
  };
  const suspend = (event) => {
    event.preventDefault();
    // act() never rejects: action.run turns a failure into the page's message.
    void act(() => post(`/admin/accounts/${id}/suspend`, { reason }), 'The account is suspended.');
  };

  return html`<section class="detail" aria-labelledby="account-heading">
    <h2 id="account-heading">Account <code>${accountId}</code></h2>
    <${Message} message=${action.message} />
    <${Loading} state=${account}>${([a, statement]) => html`
      <${AccountBanner} account=${a} forAdmin=${true} />
      <p>${a.display_name ?? '(name erased)'} · ${a.email ?? '(email erased)'} · status <strong id="account-status">${a.status}</strong></p>
      <dl class="stats">
        <${Stat} label="Available" value=${usd(a.available_usd)} />
        <${Stat} label="Purchased" value=${usd(a.purchased_usd)} />
        <${Stat} label="Promotional" value=${usd(a.promo_usd)} />
        <${Stat} label="Held" value=${usd(a.reserved_usd)} />
      </dl>
      <div class="actions">
        ${
          a.status === 'open' &&
          html`<form class="inline-form" onSubmit=${suspend}>
          <${Select} label="Suspension reason" id="suspend-reason" options=${SUSPENSION_REASONS} value=${reason} onChange=${(e) => setReason(e.currentTarget.value)} />
          <button type="submit" class="danger" disabled=${action.busy}>Suspend</button>
        </form>`
        }
        ${
          a.status === 'suspended' &&
          html`<button type="button" disabled=${action.busy} onClick=${() => act(() => post(`/admin/accounts/${id}/reinstate`), 'The account is reinstated.')}>Reinstate (admin decision)</button>`
        }
      </div>
      ${
        a.status !== 'closed' &&
        html`<form class="inline-form" onSubmit=${grant} aria-labelledby="promo-form-heading">
        <h3 id="promo-form-heading">Grant promotional credit</h3>
        <${Field} label="Promo amount (USD)" id="promo-amount" inputmode="decimal" required value=${promo.amount} onInput=${(e) => setPromo({ ...promo, amount: e.currentTarget.value })} />
        <${Field} label="Expires (UTC)" id="promo-expires" type="datetime-local" required value=${promo.expires} onInput=${(e) => setPromo({ ...promo, expires: e.currentTarget.value })} />
        <${Field} label="Promo reason" id="promo-reason" required maxlength="200" value=${promo.reason} onInput=${(e) => setPromo({ ...promo, reason: e.currentTarget.value })} />
        <button type="submit" disabled=${action.busy}>Grant</button>
      </form>`
      }
      <form class="inline-form" onSubmit=${issueRefund} aria-labelledby="refund-form-heading">
        <h3 id="refund-form-heading">Refund purchased credit to the card</h3>
        <${Field} label="Refund amount (USD)" id="refund-amount" inputmode="decimal" value=${refund.amount} placeholder="everything refundable" onInput=${(e) => setRefund({ ...refund, amount: e.currentTarget.value })} />
        <${Field} label="Refund reason" id="refund-reason" required maxlength="200" value=${refund.reason} onInput=${(e) => setRefund({ ...refund, reason: e.currentTarget.value })} />
        <button type="submit" disabled=${action.busy}>Refund</button>
      </form>
      <h3>Statement</h3>
      <p>Opening ${usd(statement.opening_balance)} · closing ${usd(statement.closing_balance)}</p>
      <table id="statement-table">
        <thead><tr><th scope="col">When</th><th scope="col">Movement</th><th scope="col">Reference</th><th scope="col" class="num">Purchased</th><th scope="col" class="num">Promo</th><th scope="col" class="num">Balance</th></tr></thead>
        <tbody>${statement.data
          .slice(-200)
          .reverse()
          .map(
            (l) =>
              html`<tr><td><${When} at=${l.occurred_at} /></td><td>${l.type}</td><td><code>${l.reference}</code></td><td class="num">${usd(l.purchased_change)}</td><td class="num">${usd(l.promo_change)}</td><td class="num">${usd(l.balance)}</td></tr>`,
          )}</tbody>
      </table>`}<//>
  </section>`;
}
