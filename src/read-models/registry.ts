import type { DomainEvent } from '../../domain/events';
import { expiriesProjection } from './expiries';
import { auditProjection } from './audit';
import { retentionProjection } from './retention';
import { balancesProjection } from './balances';
import { usageProjection } from './usage';
import { journalProjection } from './journal';
import { membershipsProjection } from './memberships';
import type { SqlProjection } from './runner';
import { noticesProjection } from '../notices/notices';
import { statusProjection } from '../notices/status';
import { adminRolesProjection } from './admin-roles';

/**
 * Every read model the gateway keeps in PostgreSQL, all run together by runProjections (one
 * process at a time per projection), each rebuildable from the log. Add a projection here to
 * have it run.
 */
export const projections: readonly SqlProjection<DomainEvent>[] = [
  expiriesProjection,
  balancesProjection,
  usageProjection,
  journalProjection,
  auditProjection,
  retentionProjection,
  noticesProjection,
  statusProjection,
  membershipsProjection,
  adminRolesProjection,
];
