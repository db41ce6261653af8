import type { Migration } from './migrate';
import { autoTopUpMigration } from '../../src/process-managers/auto-top-up';
import { lowBalanceAlertsMigration } from '../../src/process-managers/low-balance-alerts';
import { eventStoreMigration, streamMaxAgeMigration } from '../eventstore/postgres/schema';
import { personalDataEnvelopeMigration, personalDataMigration } from './personal-data-vault';
import { expiriesInstanceMigration, expiriesMigration } from '../../projections/expiries/expiries';
import { instanceLeasesMigration } from '../../src/instances/lease';
import { auditMigration } from '../../projections/audit/audit';
import { retentionMigration } from '../../projections/retention/retention';
import { financeProjectionsMigration, usageAudioUnitsMigration } from '../../projections/balances/schema';
import { paymentsMigration } from '../payments/schema';
import { noticeUserPreferencesMigration, noticeUserReadsMigration, noticesMigration } from '../../src/notices/notices';
import { statusMigration } from '../../src/notices/status';
import { mailOutboxMigration } from '../../src/mail/outbox';
import {
  adminRolesProjectionMigration,
  adminUsersMigration,
  identityCrashSafetyMigration,
  identityMigration,
  invitationsMigration,
} from '../../src/identity/schema';

/**
 * Every migration of the application, in one list so their order is visible in one place.
 * Each capability keeps its SQL beside its code and adds one line here.
 */
export const migrations: readonly Migration[] = [
  eventStoreMigration,
  personalDataMigration,
  personalDataEnvelopeMigration,
  expiriesMigration,
  auditMigration,
  retentionMigration,
  financeProjectionsMigration,
  paymentsMigration,
  autoTopUpMigration,
  lowBalanceAlertsMigration,
  instanceLeasesMigration,
  expiriesInstanceMigration,
  streamMaxAgeMigration,
  noticesMigration,
  statusMigration,
  mailOutboxMigration,
  usageAudioUnitsMigration,
  identityMigration,
  invitationsMigration,
  adminUsersMigration,
  noticeUserPreferencesMigration,
  identityCrashSafetyMigration,
  noticeUserReadsMigration,
  adminRolesProjectionMigration,
];
