import { html } from 'htm/preact';
import { get } from '../api.js';
import { microOf, usd } from '../money.js';
import { Loading, Stat, When, useLoad } from '../ui.js';

const SUSPENSION_HELP = {
  negative_balance: [
    'Your balance went below zero when a request cost more than its reservation.',
    'Top up at least the shortfall on the Billing page; the account is reinstated as soon as the top-up lands.',
  ],
  auto_top_up_failed: [
    'The automatic top-up could not charge your saved card.',
    'Top up by card on the Billing page; that also saves a working card for the next automatic top-up.',
  ],
  payment_dispute: ['A payment on this account is disputed with the card issuer.', 'Contact support to resolve the dispute.'],
  terms_violation: ['An administrator suspended it for a breach of the terms of service.', 'Contact support to appeal.'],
  customer_request: ['It was suspended at your request.', 'Contact support to reinstate it.'],
};

/**
 * Why requests are refused and what to do, whenever the account cannot spend. The customer is
 * told what to do; an admin (`forAdmin`) sees the same facts about "this account".
 */
export function AccountBanner({ account, forAdmin = false }) {
  const whose = forAdmin ? 'This account' : 'Your account';
  if (account.status === 'suspended') {
    const [why, what] = SUSPENSION_HELP[account.suspension_reason] ?? ['It was suspended.', 'Contact support.'];
    return html`<div class="banner danger" role="alert" id="account-banner">
      <strong>${whose} is suspended (${account.suspension_reason?.replaceAll('_', ' ')}).</strong> ${why} API requests are refused until it is reinstated.${forAdmin ? '' : ` ${what}`}
    </div>`;
  }
  if (account.status === 'closed') {
    return html`<div class="banner danger" role="alert" id="account-banner"><strong>${whose} is closed.</strong> API requests are refused.</div>`;
  }
  if (microOf(account.balance_usd) < 0n) {
    return html`<div class="banner danger" role="alert" id="account-banner">
      <strong>${forAdmin ? 'The' : 'Your'} balance is negative (${usd(account.balance_usd)}).</strong> A request cost more than was reserved for it. New requests are refused until a top-up covers it${forAdmin ? '.' : html`: top up on the <a href="#/billing">Billing page</a>.`}
    </div>`;
  }
  return null;
}

export function BalancePage() {
  const account = useLoad(() => get('/v1/account'));
  return html`<${Loading} state=${account}>${(a) => html`
    <section aria-labelledby="balance-heading">
      <h2 id="balance-heading">Credit</h2>
      <dl class="stats">
        <${Stat} id="available" label="Available to spend" value=${usd(a.available_usd)} />
        <${Stat} id="purchased" label="Purchased credit" value=${usd(a.purchased_usd)} />
        <${Stat} id="promo" label="Promotional credit" value=${usd(a.promo_usd)} />
        <${Stat} id="reserved" label="Held for open requests" value=${usd(a.reserved_usd)} />
      </dl>
      <p class="muted">Available = purchased + promotional − held. Promotional credit is spent first and is not refundable.</p>
    </section>
    <section aria-labelledby="promo-heading">
      <h2 id="promo-heading">Promotional credit</h2>
      ${
        a.promo_grants.length === 0
          ? html`<p>None.</p>`
          : html`<table>
            <thead><tr><th scope="col" class="num">Granted</th><th scope="col" class="num">Remaining</th><th scope="col">Expires</th></tr></thead>
            <tbody>${a.promo_grants.map(
              (g) => html`<tr>
              <td class="num">${usd(g.granted_usd)}</td><td class="num">${g.expired ? 'expired' : usd(g.remaining_usd)}</td><td><${When} at=${g.expires_at} /></td>
            </tr>`,
            )}</tbody>
          </table>`
      }
    </section>
    <section aria-labelledby="reservations-heading">
      <h2 id="reservations-heading">Open reservations</h2>
      ${
        a.open_reservations.length === 0
          ? html`<p>No request is in flight.</p>`
          : html`<table>
            <thead><tr><th scope="col">Request</th><th scope="col">Model</th><th scope="col" class="num">Held</th><th scope="col">Expires</th></tr></thead>
            <tbody>${a.open_reservations.map((r) => html`<tr><td><code>${r.request_id}</code></td><td>${r.model}</td><td class="num">${usd(r.amount_usd)}</td><td><${When} at=${r.expires_at} /></td></tr>`)}</tbody>
          </table>`
      }
    </section>
    <section aria-labelledby="totals-heading">
      <h2 id="totals-heading">Since the account opened</h2>
      <dl class="stats">
        <${Stat} label="Topped up" value=${usd(a.totals.topped_up_usd)} />
        <${Stat} label="Refunded" value=${usd(a.totals.refunded_usd)} />
        <${Stat} label="Spent on requests" value=${usd(a.totals.usage_cost_usd)} />
        <${Stat} label="Tokens in / out" value=${`${BigInt(a.totals.input_tokens).toLocaleString('en-US')} / ${BigInt(a.totals.output_tokens).toLocaleString('en-US')}`} />
      </dl>
    </section>`}<//>`;
}
