import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { del, get, post, put } from '../api.js';
import { decimalFromInput, usd } from '../money.js';
import { Field, Loading, Message, Stat, When, useAction, useLoad } from '../ui.js';

const MONEY_EVENTS = {
  TopUpCompleted: 'Top-up',
  RefundIssued: 'Refund',
  RefundShortfall: 'Refund beyond the credit',
  PayoutRecorded: 'Payout',
  RefundClaimed: 'Refund claimed',
  PurchasedCreditForfeited: 'Forfeited',
  DisputeClosed: 'Dispute closed',
};

export function BillingPage({ session, params }) {
  // A person: their role's billing permission; a key: its account_write scope.
  const canWrite = session.kind === 'user' ? session.permissions.includes('billing') : session.scopes.includes('account_write');
  const returned = params.get('top_up');
  const account = useLoad(() => get('/v1/account'));
  // A closed account: its credit can be claimed; nothing is bought or changed there any more.
  const closure = account.data?.closure ?? null;
  const [claims, setClaims] = useState(0);
  // Only once the account is known to be open: a closed account's settings no longer change.
  const writable = canWrite && account.data !== null && !closure;
  return html`
    ${returned === 'success' && html`<p class="notice ok" role="status">Payment received. The credit is added when Stripe confirms the payment, usually within seconds.</p>`}
    ${returned === 'cancelled' && html`<p class="notice" role="status">The top-up was cancelled; nothing was charged.</p>`}
    ${
      closure &&
      html`<${RefundClaim} closure=${closure} canClaim=${session.kind === 'user' && session.permissions.includes('billing')} onClaimed=${() => {
        void account.reload();
        setClaims((n) => n + 1);
      }} />`
    }
    ${writable && html`<${TopUp} />`}
    <${AutoTopUp} canWrite=${writable} />
    <${Disputes} />
    <${Invoices} />
    <${VatId} canWrite=${writable} />
    <${History} key=${claims} />`;
}

function RefundClaim({ closure, canClaim, onClaimed }) {
  const action = useAction();
  const claimable = closure.claimable_usd !== '0.000000';
  const claim = async () => {
    const claimed = await action.run(
      () => post('/v1/account/refund-claims'),
      (c) =>
        c.outstanding_usd === '0.000000'
          ? `Claimed ${usd(c.claimed_usd)}: refunded to your card.`
          : `Claimed ${usd(c.claimed_usd)}. ${usd(c.outstanding_usd)} is paid to you by support (bank transfer); any card part is refunded to the card.`,
    );
    if (claimed) onClaimed();
  };
  return html`<section aria-labelledby="claim-heading" id="refund-claim">
    <h2 id="claim-heading">Refund after closure</h2>
    <p>This account was closed <${When} at=${closure.closed_at} />. Its remaining credit can be claimed until <strong id="claim-deadline"><${When} at=${closure.claimable_until} /></strong>; after that it is forfeited.</p>
    <dl class="stats">
      <${Stat} label="Claimable now" id="claimable-amount" value=${usd(closure.claimable_usd)} />
      <${Stat} label="Claimed, still to be paid" id="claim-outstanding" value=${usd(closure.claimed_outstanding_usd)} />
    </dl>
    ${
      closure.claim_period_over
        ? html`<p class="notice" role="status">The claim period is over.</p>`
        : !claimable
          ? html`<p role="status">Nothing more to claim.</p>`
          : canClaim
            ? html`<button type="button" id="claim-refund" onClick=${claim} disabled=${action.busy}>Claim refund</button>`
            : html`<p role="status">The account's owner or a billing member can claim it.</p>`
    }
    <${Message} message=${action.message} />
  </section>`;
}

function TopUp() {
  const [amount, setAmount] = useState('25.00');
  const action = useAction();
  const submit = async (event) => {
    event.preventDefault();
    const amountUsd = decimalFromInput(amount);
    if (amountUsd === null) return action.setMessage({ kind: 'error', text: 'Enter an amount in dollars and cents, such as 25.00.' });
    const back = `${location.origin}/dashboard/#/billing`;
    const started = await action.run(() =>
      post('/v1/billing/top-ups', { amount_usd: amountUsd, success_url: `${back}?top_up=success`, cancel_url: `${back}?top_up=cancelled` }),
    );
    // Stripe Checkout takes the card; the ledger is credited by Stripe's webhook, not by this page.
    if (started) location.assign(started.url);
  };
  return html`<section aria-labelledby="top-up-heading">
    <h2 id="top-up-heading">Top up</h2>
    <form onSubmit=${submit} class="inline-form">
      <${Field} label="Amount (USD, before tax)" id="top-up-amount" inputmode="decimal" required value=${amount} onInput=${(e) => setAmount(e.currentTarget.value)} hint="At least the minimum top-up; whole cents. You pay on Stripe's checkout page." />
      <button type="submit" disabled=${action.busy}>Top up with a card</button>
    </form>
    <${Message} message=${action.message} />
  </section>`;
}

function AutoTopUp({ canWrite }) {
  const setting = useLoad(() => get('/v1/billing/auto-top-up'));
  const [threshold, setThreshold] = useState('');
  const [amount, setAmount] = useState('');
  const action = useAction();
  const save = async (event) => {
    event.preventDefault();
    const body = { threshold_usd: decimalFromInput(threshold), amount_usd: decimalFromInput(amount) };
    if (body.threshold_usd === null || body.amount_usd === null)
      return action.setMessage({ kind: 'error', text: 'Enter both amounts in dollars, such as 10.00 and 25.00.' });
    if (await action.run(() => put('/v1/billing/auto-top-up', body), 'Auto top-up is on.')) void setting.reload(); // reload never rejects
  };
  const turnOff = async () => {
    if (await action.run(() => del('/v1/billing/auto-top-up'), 'Auto top-up is off.')) void setting.reload(); // reload never rejects
  };
  return html`<section aria-labelledby="auto-heading">
    <h2 id="auto-heading">Auto top-up</h2>
    <${Loading} state=${setting}>${(s) => html`
      <p id="auto-top-up-status">${s.enabled ? html`On: when the available balance falls below <strong>${usd(s.threshold_usd)}</strong>, your saved card is charged <strong>${usd(s.amount_usd)}</strong>.` : 'Off.'}</p>
      ${s.last_failure && html`<p class="notice error" role="alert">The last automatic top-up failed (<${When} at=${s.last_failure.at} />): ${s.last_failure.reason}.</p>`}
      ${
        canWrite &&
        html`<form onSubmit=${save} class="inline-form">
        <${Field} label="When available falls below (USD)" id="auto-threshold" inputmode="decimal" required value=${threshold} placeholder=${s.threshold_usd ?? '10.00'} onInput=${(e) => setThreshold(e.currentTarget.value)} />
        <${Field} label="Charge the card (USD)" id="auto-amount" inputmode="decimal" required value=${amount} placeholder=${s.amount_usd ?? '25.00'} onInput=${(e) => setAmount(e.currentTarget.value)} />
        <button type="submit" disabled=${action.busy}>Save</button>
        ${s.enabled && html`<button type="button" class="secondary" onClick=${turnOff} disabled=${action.busy}>Turn off</button>`}
      </form>`
      }`}<//>
    <${Message} message=${action.message} />
  </section>`;
}

function History() {
  const statement = useLoad(() => get('/v1/account/transactions'));
  return html`<section aria-labelledby="history-heading">
    <h2 id="history-heading">Payments and refunds</h2>
    <${Loading} state=${statement}>${({ data }) => {
      const lines = data.filter((l) => MONEY_EVENTS[l.type]).reverse();
      if (lines.length === 0) return html`<p>No payments yet.</p>`;
      return html`<table id="payments-table">
        <thead><tr><th scope="col">When</th><th scope="col">What</th><th scope="col">Reference</th><th scope="col" class="num">Amount</th><th scope="col" class="num">Balance after</th></tr></thead>
        <tbody>${lines.map((l) => html`<tr><td><${When} at=${l.occurred_at} /></td><td>${MONEY_EVENTS[l.type]}</td><td><code>${l.reference}</code></td><td class="num">${usd(l.amount)}</td><td class="num">${usd(l.balance)}</td></tr>`)}</tbody>
      </table>`;
    }}<//>
  </section>`;
}

function Invoices() {
  const documents = useLoad(() => get('/v1/billing/invoices'));
  return html`<section aria-labelledby="invoices-heading">
    <h2 id="invoices-heading">Invoices and receipts</h2>
    <${Loading} state=${documents}>${({ data }) => {
      if (data.length === 0) return html`<p>No invoices yet.</p>`;
      return html`<table id="invoices-table">
        <thead><tr><th scope="col">When</th><th scope="col">Document</th><th scope="col" class="num">Net</th><th scope="col" class="num">Tax</th><th scope="col" class="num">Total</th><th scope="col">Download</th></tr></thead>
        <tbody>${data.map(
          (d) =>
            html`<tr><td><${When} at=${d.created_at} /></td><td>${d.object === 'billing.invoice' ? `Invoice ${d.number ?? d.id}` : `Receipt, reference ${d.reference}`}${d.reverse_charge ? ' (reverse charge)' : ''}</td><td class="num">${usd(d.subtotal_usd)}</td><td class="num">${usd(d.tax_usd)}</td><td class="num">${usd(d.total_usd)}</td><td>${d.document_url ? html`<a href=${d.document_url} download>PDF</a>` : '-'}</td></tr>`,
        )}</tbody>
      </table>`;
    }}<//>
  </section>`;
}

function VatId({ canWrite }) {
  const current = useLoad(() => get('/v1/billing/tax-id'));
  const [value, setValue] = useState('');
  const action = useAction();
  const save = async (event) => {
    event.preventDefault();
    if (await action.run(() => put('/v1/billing/tax-id', { vat_id: value.trim() === '' ? null : value }), 'VAT ID saved.')) void current.reload(); // reload never rejects
  };
  return html`<section aria-labelledby="vat-heading">
    <h2 id="vat-heading">VAT ID</h2>
    <${Loading} state=${current}>${(t) => html`
      <p id="vat-status">${t.vat_id ? html`<code>${t.vat_id}</code> (${t.verification}${t.reverse_charge ? ': reverse charge, no VAT added' : ''})` : 'None: VAT is added at checkout where it applies.'}</p>`}<//>
    ${
      canWrite &&
      html`<form onSubmit=${save} class="inline-form">
      <${Field} label="EU VAT ID" id="vat-id" value=${value} placeholder="DE123456789" onInput=${(e) => setValue(e.currentTarget.value)} hint="Leave empty to remove it." />
      <button type="submit" disabled=${action.busy}>Set VAT ID</button>
    </form>`
    }
    <${Message} message=${action.message} />
  </section>`;
}

function Disputes() {
  const account = useLoad(() => get('/v1/account'));
  return html`<${Loading} state=${account}>${(a) =>
    (a.disputes ?? []).length === 0
      ? null
      : html`<section aria-labelledby="disputes-heading">
    <h2 id="disputes-heading">Card disputes</h2>
    <table id="disputes-table">
      <thead><tr><th scope="col">Dispute</th><th scope="col">Payment</th><th scope="col" class="num">Amount</th><th scope="col">Status</th></tr></thead>
      <tbody>${a.disputes.map((d) => html`<tr><td><code>${d.dispute_id}</code></td><td><code>${d.payment_intent}</code></td><td class="num">${usd(d.amount_usd)}</td><td>${d.status}</td></tr>`)}</tbody>
    </table>
  </section>`}<//>`;
}
