import type { AccountCommand } from '../../../../domain/account/commands';
import type { AccountEvent, AccountEventOfType } from '../../../../domain/account/events';
import { eventMetadataFrom, type CommandMetadata } from '../../../../domain/events/metadata';
import { addMs } from '../../../../domain/time/instant';

export const T0 = '2026-01-01T00:00:00.000Z';
export const minutesAfterT0 = (minutes: number): string => addMs(T0, minutes * 60_000);

export function commandMetadata(now: string = T0): CommandMetadata {
  return { now, correlationId: 'req-corr-1', causationId: 'cmd-1', actor: { kind: 'system', process: 'test' } };
}

export function cmd<T extends AccountCommand['type']>(type: T, data: Extract<AccountCommand, { type: T }>['data'], now: string = T0) {
  return { type, data, metadata: commandMetadata(now) } as Extract<AccountCommand, { type: T }>;
}

/** The event a command at `now` produces: metadata is derived from the command's. */
export function ev<T extends AccountEvent['type']>(type: T, data: AccountEventOfType<T>['data'], now: string = T0) {
  return { type, data, metadata: eventMetadataFrom(commandMetadata(now)) } as AccountEventOfType<T>;
}

export const opened = ev('AccountOpened', { accountId: 'acc-1', displayNameCiphertext: 'enc:name', emailCiphertext: 'enc:email' });
export const toppedUp = (amount: bigint, paymentReference = 'pay-1') => ev('TopUpCompleted', { paymentReference, amount, autoTopUpAttemptId: null });
export const reservationPlaced = (requestId: string, amount: bigint, extra: { now?: string; priceVersion?: number; instanceId?: string } = {}) =>
  ev(
    'ReservationPlaced',
    {
      requestId,
      keyId: 'key-1',
      model: 'llama-3.1-8b',
      operation: 'chat',
      amount,
      priceVersion: extra.priceVersion ?? 1,
      expiresAt: addMs(extra.now ?? T0, 10 * 60_000),
      instanceId: extra.instanceId ?? null,
    },
    extra.now,
  );
export const placeReservation = (requestId: string, amount: bigint, now: string = T0, priceVersion = 1) =>
  cmd('PlaceReservation', { requestId, keyId: 'key-1', model: 'llama-3.1-8b', operation: 'chat', amount, priceVersion }, now);
export const promoGranted = (grantId: string, amount: bigint, expiresAt: string) => ev('PromoCreditGranted', { grantId, amount, expiresAt, reason: 'welcome' });
/** USD 1 per million input tokens, USD 2 per million output tokens */
export const PRICE_V1 = { version: 1, inputPerMillion: 1_000_000n, outputPerMillion: 2_000_000n };
