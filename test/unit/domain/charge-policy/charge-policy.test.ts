import { chargeFor, type ChargeDecision, type RequestOutcome, type TokenUsage } from '../../../../domain/charge-policy/charge-policy';

const usage = (inputTokens: bigint, outputTokens: bigint, estimated = false): TokenUsage => ({ inputTokens, outputTokens, estimated });

// DESIGN.md "What is charged", row by row.
const rows: [string, RequestOutcome, ChargeDecision][] = [
  ['malformed request: nothing, not even a reservation', { kind: 'malformed' }, { decision: 'no_reservation' }],
  ['gateway error: released, not charged', { kind: 'gateway_error' }, { decision: 'release', reason: 'gateway_error' }],
  ['an upload that failed mid-stream: released, not charged', { kind: 'upload_incomplete' }, { decision: 'release', reason: 'upload_incomplete' }],
  ['upstream error with no tokens reported: released', { kind: 'upstream_error', tokens: null }, { decision: 'release', reason: 'upstream_error_no_tokens' }],
  [
    'upstream error with prompt processed but no output produced: released',
    { kind: 'upstream_error', tokens: usage(500n, 0n) },
    { decision: 'release', reason: 'upstream_error_no_tokens' },
  ],
  [
    'upstream error after producing tokens: those tokens charged',
    { kind: 'upstream_error', tokens: usage(500n, 20n) },
    { decision: 'settle', usage: usage(500n, 20n), outcome: 'upstream_error' },
  ],
  [
    'speech cut by its upstream after some audio went out: the characters relayed charged',
    { kind: 'upstream_error', tokens: { ...usage(0n, 0n, true), inputCharacters: 17n } },
    { decision: 'settle', usage: { ...usage(0n, 0n, true), inputCharacters: 17n }, outcome: 'upstream_error' },
  ],
  [
    'speech failing before any audio went out: released',
    { kind: 'upstream_error', tokens: { ...usage(0n, 0n, true), inputCharacters: 0n } },
    { decision: 'release', reason: 'upstream_error_no_tokens' },
  ],
  [
    'moderation refusal: charged only for the tokens the upstream reports',
    { kind: 'moderation_refusal', reported: usage(120n, 0n) },
    { decision: 'settle', usage: usage(120n, 0n), outcome: 'moderation_refusal' },
  ],
  [
    'moderation refusal with nothing reported: released',
    { kind: 'moderation_refusal', reported: null },
    { decision: 'release', reason: 'moderation_refusal_no_tokens_reported' },
  ],
  [
    'client disconnected: tokens produced so far charged',
    { kind: 'client_disconnected', producedSoFar: usage(300n, 42n, true) },
    { decision: 'settle', usage: usage(300n, 42n, true), outcome: 'client_disconnected' },
  ],
  [
    'ended at the maximum request duration: tokens produced so far charged',
    { kind: 'max_duration_reached', producedSoFar: usage(300n, 42n, true) },
    { decision: 'settle', usage: usage(300n, 42n, true), outcome: 'max_duration_reached' },
  ],
  [
    'completed after the client left: charged',
    { kind: 'completed_after_disconnect', usage: usage(300n, 900n) },
    { decision: 'settle', usage: usage(300n, 900n), outcome: 'completed_after_disconnect' },
  ],
  ['completed: charged', { kind: 'completed', usage: usage(10n, 20n) }, { decision: 'settle', usage: usage(10n, 20n), outcome: 'completed' }],
];

describe('charge policy', () => {
  it.each(rows)('%s', (_rule, outcome, expected) => expect(chargeFor(outcome)).toEqual(expected));
});
