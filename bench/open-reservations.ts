/**
 * What N reservations open at once on one account cost the account's decider (decide + evolve, as
 * the group commit runs them): place N, then settle all N, for growing N, in this process.
 *   npx tsx bench/open-reservations.ts [--max 20000]
 *
 * Time per reservation should stay about flat as N grows (each event touches one entry of the
 * open-reservations map). It grew with N while evolve copied the whole map on every event: 10,000
 * streams open on one account then took tens of seconds of CPU to settle, the event loop stalled.
 * Printed: µs per reservation (placed and settled) at each N, and its ratio to the smallest N.
 */
import { randomUUID } from 'node:crypto';
import { accountDecider, type AccountCommand, type AccountState } from '../domain/account';
import { usd } from '../domain/money';
import type { CommandMetadata } from '../domain/events';
import { flag, printTable } from './support/embedded-postgres';

if (process.argv.includes('--help') || process.argv.includes('-h')) {
  process.stdout.write('npx tsx bench/open-reservations.ts [--max 20000]: decide + evolve of N open reservations on one account, N = 1,000 .. max\n');
  process.exit(0);
}
const MAX = flag('--max', 20_000);
const PRICE = { version: 1, inputPerMillion: usd('1'), outputPerMillion: usd('2') };
const decider = accountDecider();

function meta(): CommandMetadata {
  const id = randomUUID();
  return { now: '2026-12-02T00:00:00.000Z', correlationId: id, causationId: id, actor: { kind: 'system', process: 'bench' } };
}

function run(state: AccountState, command: AccountCommand): AccountState {
  const decision = decider.decide(command, state);
  if (!decision.ok) throw new Error(`refused: ${decision.error.error}`);
  return decision.events.reduce((s, e) => decider.evolve(s, e), state);
}

function oneRound(n: number): number {
  const id = `acc-${randomUUID()}`;
  let state = decider.initialState();
  state = run(state, { type: 'OpenAccount', data: { accountId: id, displayNameCiphertext: 'n', emailCiphertext: 'e' }, metadata: meta() });
  state = run(state, { type: 'CompleteTopUp', data: { amount: usd('1000'), paymentReference: `pi_${randomUUID()}` }, metadata: meta() });
  const ids = Array.from({ length: n }, (_, i) => `req_${i}`);
  const started = performance.now();
  for (const requestId of ids)
    state = run(state, {
      type: 'PlaceReservation',
      data: { requestId, keyId: 'key-1', model: 'm', operation: 'chat', amount: usd('0.01'), priceVersion: 1 },
      metadata: meta(),
    });
  for (const requestId of ids)
    state = run(state, {
      type: 'SettleReservation',
      data: { requestId, usage: { inputTokens: 10n, outputTokens: 10n, estimated: false }, price: PRICE, outcome: 'completed' },
      metadata: meta(),
    });
  if (state.openReservations.size !== 0) throw new Error('reservations left open');
  return ((performance.now() - started) * 1_000) / n;
}

const sizes = [1_000, 2_000, 5_000, 10_000, 20_000].filter((n) => n <= MAX);
oneRound(1_000); // warm-up
const rows = [['open reservations N', 'µs per reservation (place + settle)', 'vs N = 1,000']];
let base = 0;
for (const n of sizes) {
  const us = Math.min(oneRound(n), oneRound(n));
  if (n === sizes[0]) base = us;
  rows.push([n.toLocaleString('en'), us.toFixed(1), `${(us / base).toFixed(2)}x`]);
}
printTable(rows);
