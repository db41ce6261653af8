/** The audit projection locks the chain's head only for batches that add to the chain. */
import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { migrate } from '../../../adapters/postgres/migrate';
import { migrations } from '../../../adapters/postgres/migrations';
import { createPool } from '../../../adapters/postgres/pool';
import type { DomainEvent } from '../../../domain/events';
import { adminMetadata } from '../../../src/command-metadata';
import type { RecordedEvent } from '../../../src/ports/event-store';
import { auditProjection } from '../../../src/read-models/audit';
import { inTransaction } from '../../../src/read-models/transaction';
import { createTestDatabase } from '../../support/database';

let pool: Pool;
let seq = 0n;

beforeAll(async () => {
  pool = createPool({ connectionString: await createTestDatabase('auditlock', { migrated: true }), max: 4 });
  await migrate(pool, migrations);
});
afterAll(() => pool.end());

function recorded(streamId: string, event: Omit<DomainEvent, 'metadata'>): RecordedEvent<DomainEvent> {
  seq += 1n;
  const { correlationId, causationId, actor } = adminMetadata('ada');
  const metadata = { correlationId, causationId: causationId ?? correlationId, actor, occurredAt: new Date().toISOString() };
  const full = { ...event, metadata } as unknown as DomainEvent;
  return { id: randomUUID(), streamId, revision: 0n, position: { tx: 1n, seq }, type: full.type, event: full, recordedAt: new Date() };
}

/** Applies a batch in a transaction that gives up at once (SQLSTATE 55P03) if the chain's head is locked. */
const apply = (events: RecordedEvent<DomainEvent>[]) =>
  inTransaction(pool, async (db) => {
    await db.query("SET LOCAL lock_timeout = '100ms'");
    await auditProjection.apply(db, events);
  });

test('a batch with nothing to audit neither reads nor waits for the chain; an audited one still takes its lock', async () => {
  const accountId = `acct_${randomUUID().slice(0, 8)}`;
  const settled = recorded(`account-${accountId}`, {
    type: 'ReservationReleased',
    data: { reservationId: randomUUID() },
  } as unknown as Omit<DomainEvent, 'metadata'>);
  const opened = recorded(`account-${accountId}`, {
    type: 'AccountOpened',
    data: { accountId, displayNameCiphertext: 'x', emailCiphertext: 'x' },
  } as unknown as Omit<DomainEvent, 'metadata'>);
  const holder = await pool.connect();
  try {
    // A retention purge (or another batch) holds the chain's head.
    await holder.query('BEGIN');
    await holder.query('SELECT 1 FROM audit_chain FOR UPDATE');
    await expect(apply([settled])).resolves.toBeUndefined();
    await expect(apply([settled, opened])).rejects.toMatchObject({ code: '55P03' });
  } finally {
    await holder.query('ROLLBACK');
    holder.release();
  }
  await apply([settled, opened]);
  const { rows } = await pool.query<{ action: string }>('SELECT action FROM audit_log');
  expect(rows.map((r) => r.action)).toEqual(['account.opened']);
});
