import type { PoolClient } from 'pg';
import type { DomainEvent } from '../../domain/events';
import type { EventStore, RecordedEvent, StreamRevision } from '../ports/event-store';
import type { SqlProjection } from './runner';

/**
 * Who has which role in which account: the `memberships` table, projected from each account's
 * members stream (`account-members-<accountId>`: MemberAdded, MemberRoleChanged, MemberRemoved)
 * and nothing else, so it is rebuilt from the log like every read model.
 *
 * Two writers apply the same events and never twice: the read-models runner (the global log,
 * checkpointed) and `syncMembers`, which a membership command calls inside its transaction to read
 * its own writes at once and to decide on current rows. Both lock the account's row in
 * `membership_streams`, which holds the last revision applied to that account's rows, and apply
 * only events past it. Accounts are locked in id order, so two writers never deadlock.
 */

type MemberEvent = Extract<DomainEvent, { type: 'MemberAdded' | 'MemberRoleChanged' | 'MemberRemoved' }>;

function memberEvent(event: DomainEvent): MemberEvent | null {
  return event.type === 'MemberAdded' || event.type === 'MemberRoleChanged' || event.type === 'MemberRemoved' ? event : null;
}

/** Locks the account's row (creating it) and returns the last revision applied, -1 for none. */
async function lockAccount(db: PoolClient, accountId: string): Promise<bigint> {
  await db.query('INSERT INTO membership_streams (account_id, revision) VALUES ($1, -1) ON CONFLICT (account_id) DO NOTHING', [accountId]);
  const { rows } = await db.query<{ revision: string }>('SELECT revision::text AS revision FROM membership_streams WHERE account_id = $1 FOR UPDATE', [
    accountId,
  ]);
  return BigInt(rows[0]!.revision);
}

/** Applies an account's events in stream order, skipping those at or before the revision already applied. */
async function applyToAccount(db: PoolClient, accountId: string, events: readonly Pick<RecordedEvent<DomainEvent>, 'revision' | 'event'>[]): Promise<bigint> {
  let applied = await lockAccount(db, accountId);
  const start = applied;
  for (const { revision, event } of events) {
    if (revision <= applied) continue;
    applied = revision;
    const member = memberEvent(event);
    if (!member) continue;
    switch (member.type) {
      case 'MemberAdded':
        await db.query(
          `INSERT INTO memberships (account_id, user_id, role, since) VALUES ($1, $2, $3, $4)
           ON CONFLICT (account_id, user_id) DO UPDATE SET role = EXCLUDED.role`,
          [accountId, member.data.userId, member.data.role, member.metadata.occurredAt],
        );
        break;
      case 'MemberRoleChanged':
        await db.query('UPDATE memberships SET role = $3 WHERE account_id = $1 AND user_id = $2', [accountId, member.data.userId, member.data.role]);
        break;
      case 'MemberRemoved':
        await db.query('DELETE FROM memberships WHERE account_id = $1 AND user_id = $2', [accountId, member.data.userId]);
        break;
    }
  }
  if (applied !== start) await db.query('UPDATE membership_streams SET revision = $2 WHERE account_id = $1', [accountId, applied.toString()]);
  return applied;
}

const PREFIX = 'account-members-';

export const membershipsProjection: SqlProjection<DomainEvent> = {
  name: 'memberships',
  async apply(db, events) {
    const byAccount = new Map<string, RecordedEvent<DomainEvent>[]>();
    for (const recorded of events) {
      if (!recorded.streamId.startsWith(PREFIX)) continue;
      const accountId = recorded.streamId.slice(PREFIX.length);
      const list = byAccount.get(accountId) ?? [];
      list.push(recorded);
      byAccount.set(accountId, list);
    }
    for (const accountId of [...byAccount.keys()].sort()) await applyToAccount(db, accountId, byAccount.get(accountId)!);
  },
  async reset(db) {
    await db.query('TRUNCATE memberships, membership_streams');
  },
};

/**
 * Brings one account's rows up to its members stream, inside the caller's transaction, and keeps
 * the account locked until that transaction ends: a membership command decides on these rows and
 * appends at the returned revision (null: no stream yet), so no other command of this process or
 * another can change the account meanwhile.
 */
export async function syncMembers(db: PoolClient, store: EventStore<DomainEvent>, accountId: string): Promise<StreamRevision | null> {
  const applied = await lockAccount(db, accountId);
  const { events, revision } = await store.readStream(`${PREFIX}${accountId}`, { fromRevision: applied + 1n });
  if (events.length > 0) await applyToAccount(db, accountId, events);
  return revision;
}
