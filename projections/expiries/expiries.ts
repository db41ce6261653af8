import type { DomainEvent } from '../../domain/events';

/**
 * What will expire when: open reservations (their deadline, and the instance whose lease keeps
 * them open) and promo grants (their expiry). The expiry process reads this to end reservations
 * a crashed gateway never came back for, and to lapse promo credit. Pure: a recorded event in, a change to the read model out.
 */
export type ExpiryKind = 'reservation' | 'promo_grant';

export interface ExpiryRow {
  readonly kind: ExpiryKind;
  readonly streamId: string;
  /** request id or grant id */
  readonly itemId: string;
  readonly expiresAt: string;
  /** the gateway instance holding a reservation (null: unknown, or a promo grant) */
  readonly instanceId: string | null;
}

export type ExpiryChange =
  | { readonly op: 'due'; readonly row: ExpiryRow }
  | { readonly op: 'done'; readonly kind: ExpiryKind; readonly streamId: string; readonly itemId: string };

export function expiryChange(streamId: string, event: DomainEvent): ExpiryChange | null {
  switch (event.type) {
    case 'ReservationPlaced':
      return {
        op: 'due',
        row: { kind: 'reservation', streamId, itemId: event.data.requestId, expiresAt: event.data.expiresAt, instanceId: event.data.instanceId },
      };
    case 'ReservationSettled':
    case 'ReservationReleased':
    case 'ReservationExpired':
      return { op: 'done', kind: 'reservation', streamId, itemId: event.data.requestId };
    case 'PromoCreditGranted':
      return { op: 'due', row: { kind: 'promo_grant', streamId, itemId: event.data.grantId, expiresAt: event.data.expiresAt, instanceId: null } };
    case 'PromoCreditExpired':
      return { op: 'done', kind: 'promo_grant', streamId, itemId: event.data.grantId };
    default:
      return null;
  }
}

export const expiriesMigration = {
  id: '0003_expiries',
  sql: `
    CREATE TABLE expiries (
      kind text NOT NULL,
      stream_id text NOT NULL,
      item_id text NOT NULL,
      expires_at timestamptz NOT NULL,
      PRIMARY KEY (kind, stream_id, item_id)
    );
    CREATE INDEX expiries_due ON expiries (expires_at);
  `,
};

/** Rows from before this carry no instance: they keep expiring at their deadline only. */
export const expiriesInstanceMigration = {
  id: '0041_expiries_instance',
  sql: `
    ALTER TABLE expiries ADD COLUMN instance_id text;
    CREATE INDEX expiries_by_instance ON expiries (instance_id) WHERE instance_id IS NOT NULL;
  `,
};
