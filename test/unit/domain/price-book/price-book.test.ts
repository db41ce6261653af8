import { priceBookDecider } from '../../../../domain/price-book/decide';
import type { PriceBookCommand } from '../../../../domain/price-book/commands';
import type { PriceBookEvent } from '../../../../domain/price-book/events';
import { priceByVersion, priceInForce, type PriceBookState } from '../../../../domain/price-book/state';
import { fold } from '../../../../domain/decider/decision';
import { eventMetadataFrom } from '../../../../domain/events/metadata';
import { usd } from '../../../../domain/money/money';
import { deciderSpec } from '../decider-spec';
import { commandMetadata, minutesAfterT0, T0 } from '../account/fixtures';

const given = deciderSpec(priceBookDecider);
const cmd = <T extends PriceBookCommand['type']>(type: T, data: Extract<PriceBookCommand, { type: T }>['data'], now = T0) =>
  ({ type, data, metadata: commandMetadata(now) }) as Extract<PriceBookCommand, { type: T }>;
const ev = <T extends PriceBookEvent['type']>(type: T, data: Extract<PriceBookEvent, { type: T }>['data'], now = T0) =>
  ({ type, data, metadata: eventMetadataFrom(commandMetadata(now)) }) as Extract<PriceBookEvent, { type: T }>;

const added = ev('ModelAdded', { modelId: 'llama', operations: ['chat', 'completion'], maxOutputTokens: 4096n });
const priceV1 = ev('PriceSet', {
  version: 1,
  modelId: 'llama',
  operation: 'chat',
  inputPerMillion: usd('0.15'),
  outputPerMillion: usd('0.60'),
  effectiveAt: T0,
});
const priceV2 = ev('PriceSet', {
  version: 2,
  modelId: 'llama',
  operation: 'chat',
  inputPerMillion: usd('0.20'),
  outputPerMillion: usd('0.80'),
  effectiveAt: minutesAfterT0(60),
  increase: true,
});

describe('price book decider', () => {
  it('adds a model', () =>
    given([])
      .when(cmd('AddModel', { modelId: 'llama', operations: ['chat', 'completion'], maxOutputTokens: 4096n }))
      .then([added]));
  it('model_already_exists', () =>
    given([added])
      .when(cmd('AddModel', { modelId: 'llama', operations: ['chat'], maxOutputTokens: 1n }))
      .then({ error: 'model_already_exists', modelId: 'llama' }));
  it('no_operations', () =>
    given([])
      .when(cmd('AddModel', { modelId: 'x', operations: [], maxOutputTokens: 1n }))
      .then({ error: 'no_operations' }));
  it('max_output_tokens_not_positive', () =>
    given([])
      .when(cmd('AddModel', { modelId: 'x', operations: ['chat'], maxOutputTokens: 0n }))
      .thenRejectedWith('max_output_tokens_not_positive'));
  it('retires a model', () =>
    given([added])
      .when(cmd('RetireModel', { modelId: 'llama' }))
      .then([ev('ModelRetired', { modelId: 'llama' })]));
  it('model_retired: retiring twice', () =>
    given([added, ev('ModelRetired', { modelId: 'llama' })])
      .when(cmd('RetireModel', { modelId: 'llama' }))
      .then({ error: 'model_retired', modelId: 'llama' }));

  const setPrice = (effectiveAt?: string, now = T0) =>
    cmd(
      'SetPrice',
      { modelId: 'llama', operation: 'chat', inputPerMillion: usd('0.20'), outputPerMillion: usd('0.80'), ...(effectiveAt ? { effectiveAt } : {}) },
      now,
    );
  it('numbers every price change with the next version', () =>
    given([added, priceV1])
      .when(setPrice(minutesAfterT0(60)))
      .then([priceV2]));
  it('a price takes effect now unless told otherwise', () =>
    given([added])
      .when(setPrice())
      .then([
        ev('PriceSet', { version: 1, modelId: 'llama', operation: 'chat', inputPerMillion: usd('0.20'), outputPerMillion: usd('0.80'), effectiveAt: T0 }),
      ]));
  it('price_effective_in_past', () =>
    given([added])
      .when(setPrice(T0, minutesAfterT0(1)))
      .thenRejectedWith('price_effective_in_past'));
  it('unknown_model', () => given([]).when(setPrice()).then({ error: 'unknown_model', modelId: 'llama' }));
  it('operation_not_offered', () =>
    given([added])
      .when(cmd('SetPrice', { modelId: 'llama', operation: 'embedding', inputPerMillion: 1n, outputPerMillion: 1n }))
      .then({ error: 'operation_not_offered', modelId: 'llama', operation: 'embedding' }));
  it('price_negative', () =>
    given([added])
      .when(cmd('SetPrice', { modelId: 'llama', operation: 'chat', inputPerMillion: -1n, outputPerMillion: 1n }))
      .thenRejectedWith('price_negative'));
  it('model_retired: no new price for a retired model', () =>
    given([added, ev('ModelRetired', { modelId: 'llama' })])
      .when(setPrice())
      .thenRejectedWith('model_retired'));
});

describe('priceInForce and priceByVersion', () => {
  const book: PriceBookState = fold(priceBookDecider, [added, priceV1, priceV2]);
  it('is the latest price already effective at the instant', () => {
    expect(priceInForce(book, 'llama', 'chat', minutesAfterT0(59))).toEqual({
      ok: true,
      value: { version: 1, inputPerMillion: usd('0.15'), outputPerMillion: usd('0.60'), perAudioSecond: 0n, perMillionCharacters: 0n },
    });
    expect(priceInForce(book, 'llama', 'chat', minutesAfterT0(60))).toEqual({
      ok: true,
      value: { version: 2, inputPerMillion: usd('0.20'), outputPerMillion: usd('0.80'), perAudioSecond: 0n, perMillionCharacters: 0n },
    });
  });
  it('on equal effective times the later version wins', () => {
    const again = ev('PriceSet', { ...priceV2.data, version: 3, inputPerMillion: 1n });
    const r = priceInForce(fold(priceBookDecider, [added, priceV1, priceV2, again]), 'llama', 'chat', minutesAfterT0(90));
    expect(r.ok && r.value.version).toBe(3);
  });
  it('no_price_in_force', () =>
    expect(priceInForce(book, 'llama', 'completion', T0)).toEqual({
      ok: false,
      error: { error: 'no_price_in_force', modelId: 'llama', operation: 'completion', at: T0 },
    }));
  it('unknown_model', () => expect(priceInForce(book, 'gpt-9', 'chat', T0)).toMatchObject({ ok: false, error: { error: 'unknown_model' } }));
  it('model_retired', () =>
    expect(priceInForce(fold(priceBookDecider, [added, priceV1, ev('ModelRetired', { modelId: 'llama' })]), 'llama', 'chat', T0)).toMatchObject({
      ok: false,
      error: { error: 'model_retired' },
    }));
  it('keeps every version queryable, so settlement charges the admitted price after a change', () => {
    expect(priceByVersion(book, 1)).toMatchObject({ ok: true, value: { inputPerMillion: usd('0.15') } });
    expect(priceByVersion(book, 9)).toEqual({ ok: false, error: { error: 'unknown_price_version', version: 9 } });
  });

  describe('price increases are announced ahead', () => {
    const DAY = 24 * 60;
    const setPrice = (input: string, output: string, effectiveAt: string, extra: { increaseNoticeDays?: number; shortNoticeReason?: string } = {}) =>
      cmd('SetPrice', { modelId: 'llama', operation: 'chat', inputPerMillion: usd(input), outputPerMillion: usd(output), effectiveAt, ...extra });
    it('refuses an increase effective sooner than the notice period', () =>
      given([added, priceV1])
        .when(setPrice('0.15', '0.61', minutesAfterT0(14 * DAY - 1), { increaseNoticeDays: 14 }))
        .then({ error: 'price_increase_notice_too_short', effectiveAt: minutesAfterT0(14 * DAY - 1), earliest: minutesAfterT0(14 * DAY), days: 14 }));
    it('accepts an increase exactly the notice period ahead, marked as an increase', () =>
      given([added, priceV1])
        .when(setPrice('0.20', '0.60', minutesAfterT0(14 * DAY), { increaseNoticeDays: 14 }))
        .then([
          ev('PriceSet', {
            version: 2,
            modelId: 'llama',
            operation: 'chat',
            inputPerMillion: usd('0.20'),
            outputPerMillion: usd('0.60'),
            effectiveAt: minutesAfterT0(14 * DAY),
            increase: true,
          }),
        ]));
    it('accepts a forced short-notice increase and records the reason', () =>
      given([added, priceV1])
        .when(setPrice('0.20', '0.60', minutesAfterT0(60), { increaseNoticeDays: 14, shortNoticeReason: 'upstream cost doubled' }))
        .then([
          ev('PriceSet', {
            version: 2,
            modelId: 'llama',
            operation: 'chat',
            inputPerMillion: usd('0.20'),
            outputPerMillion: usd('0.60'),
            effectiveAt: minutesAfterT0(60),
            increase: true,
            shortNoticeReason: 'upstream cost doubled',
          }),
        ]));
    it('applies a decrease at once, without notice', () =>
      given([added, priceV1])
        .when(setPrice('0.10', '0.50', T0, { increaseNoticeDays: 14 }))
        .then([
          ev('PriceSet', { version: 2, modelId: 'llama', operation: 'chat', inputPerMillion: usd('0.10'), outputPerMillion: usd('0.50'), effectiveAt: T0 }),
        ]));
    it('a first price is not an increase', () =>
      given([added])
        .when(setPrice('0.10', '0.50', T0, { increaseNoticeDays: 14 }))
        .then([
          ev('PriceSet', { version: 1, modelId: 'llama', operation: 'chat', inputPerMillion: usd('0.10'), outputPerMillion: usd('0.50'), effectiveAt: T0 }),
        ]));
  });

  describe('catalogue and scheduled retirement', () => {
    const describeCmd = (status: 'preview' | 'available' | 'deprecated', retiresAt: string | null, now = T0) =>
      cmd(
        'DescribeModel',
        {
          modelId: 'llama',
          description: 'Llama',
          contextLength: 8192,
          licence: 'Llama 3.1 Community',
          rulesText: 'No weapons.',
          rulesUrl: 'https://example.com/rules',
          status,
          retiresAt,
        },
        now,
      );
    it('a deprecated model must name its retirement date', () =>
      given([added]).when(describeCmd('deprecated', null)).thenRejectedWith('retirement_date_required'));
    it('only a deprecated model names one', () =>
      given([added])
        .when(describeCmd('available', minutesAfterT0(60)))
        .thenRejectedWith('retirement_date_only_when_deprecated'));
    it('a retirement is not in the past', () =>
      given([added])
        .when(describeCmd('deprecated', minutesAfterT0(-1)))
        .thenRejectedWith('retirement_in_past'));
    describe('a retirement newly set or brought forward is announced at least 14 days ahead', () => {
      const DAY_MINUTES = 24 * 60;
      const withRule = (retiresAt: string, reason?: string) =>
        cmd(
          'DescribeModel',
          { ...describeCmd('deprecated', retiresAt).data, retirementNoticeDays: 14, ...(reason !== undefined ? { shortNoticeReason: reason } : {}) },
          T0,
        );
      const described = (retiresAt: string, reason?: string) => {
        const { retirementNoticeDays: _days, shortNoticeReason: _reason, ...data } = withRule(retiresAt).data;
        return ev('ModelDescribed', { ...data, ...(reason !== undefined ? { shortNoticeReason: reason } : {}) });
      };
      it('sooner is refused, naming the earliest allowed instant', () =>
        given([added])
          .when(withRule(minutesAfterT0(13 * DAY_MINUTES)))
          .then({ error: 'retirement_notice_too_short', retiresAt: minutesAfterT0(13 * DAY_MINUTES), earliest: minutesAfterT0(14 * DAY_MINUTES), days: 14 }));
      it('14 days ahead is accepted, with no reason recorded', () =>
        given([added])
          .when(withRule(minutesAfterT0(14 * DAY_MINUTES)))
          .then([described(minutesAfterT0(14 * DAY_MINUTES))]));
      it('sooner with a reason is accepted, and the reason is on the event (audited)', () =>
        given([added])
          .when(withRule(minutesAfterT0(60), '  security flaw in the weights  '))
          .then([described(minutesAfterT0(60), 'security flaw in the weights')]));
      it('a blank reason does not force it', () =>
        given([added])
          .when(withRule(minutesAfterT0(60), '   '))
          .thenRejectedWith('retirement_notice_too_short'));
      it('bringing a scheduled retirement forward inside the window is refused; keeping or postponing it is not', () => {
        // Already forced to 10 days out: editing the card with that date needs no new reason.
        const scheduled = described(minutesAfterT0(10 * DAY_MINUTES), 'licence withdrawn');
        given([added, scheduled])
          .when(withRule(minutesAfterT0(5 * DAY_MINUTES)))
          .thenRejectedWith('retirement_notice_too_short');
        given([added, scheduled])
          .when(withRule(minutesAfterT0(10 * DAY_MINUTES)))
          .then([described(minutesAfterT0(10 * DAY_MINUTES))]);
        given([added, scheduled])
          .when(withRule(minutesAfterT0(12 * DAY_MINUTES)))
          .then([described(minutesAfterT0(12 * DAY_MINUTES))]);
      });
    });
    it('after its retirement date the model has no price in force, with a refusal naming the date', () => {
      const state = fold(priceBookDecider, [added, priceV1, ev('ModelDescribed', { ...describeCmd('deprecated', minutesAfterT0(60)).data })]);
      expect(priceInForce(state, 'llama', 'chat', minutesAfterT0(59)).ok).toBe(true);
      expect(priceInForce(state, 'llama', 'chat', minutesAfterT0(60))).toEqual({
        ok: false,
        error: { error: 'model_retired', modelId: 'llama', retiredAt: minutesAfterT0(60) },
      });
    });
  });
});
