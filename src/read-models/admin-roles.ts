import type { PoolClient } from 'pg';
import type { DomainEvent } from '../../domain/events';
import type { RecordedEvent } from '../ports/event-store';
import type { SqlProjection } from './runner';

/**
 * The `admin_roles` table: who holds which operator role now, projected from the `admin-roles`
 * stream (AdminRoleGranted / Changed / Revoked). `granted_at` is when the user got their present
 * role. Nothing else writes the table, so `tollgate replay admin-roles` rebuilds it as it was.
 * Authorisation itself decides on the stream (Identity.adminRole): a revocation is in force at
 * once, not when this projection catches up.
 */
export const adminRolesProjection: SqlProjection<DomainEvent> = {
  name: 'admin-roles',
  async apply(db: PoolClient, events: readonly RecordedEvent<DomainEvent>[]) {
    for (const { event } of events) {
      switch (event.type) {
        case 'AdminRoleGranted':
        case 'AdminRoleChanged':
          await db.query(
            `INSERT INTO admin_roles (user_id, role, granted_at) VALUES ($1, $2, $3)
             ON CONFLICT (user_id) DO UPDATE SET role = EXCLUDED.role, granted_at = EXCLUDED.granted_at`,
            [event.data.userId, event.data.role, event.metadata.occurredAt],
          );
          break;
        case 'AdminRoleRevoked':
          await db.query('DELETE FROM admin_roles WHERE user_id = $1', [event.data.userId]);
          break;
        default:
          break;
      }
    }
  },
  async reset(db: PoolClient) {
    await db.query('TRUNCATE admin_roles');
  },
};
