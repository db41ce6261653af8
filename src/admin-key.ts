import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { apiKeyStreamId } from '../domain/api-key';
import { ADMIN_KEY_ID, OPERATORS_ACCOUNT, type ApiKeys } from './api-keys';
import type { Config } from './config';
import type { Ledger } from './ledger';
import { systemMetadata } from './command-metadata';

/**
 * The first start bootstraps one admin key: TOLLGATE_ADMIN_KEY if given, otherwise a generated
 * one printed once to the terminal (never to the log). Only its bcrypt hash is stored, as an
 * ApiKeyIssued event with the admin scope.
 */
export async function bootstrapAdminKey(keys: ApiKeys, ledger: Ledger, config: Config, log: Logger): Promise<void> {
  const { state } = await ledger.apiKeys.load(apiKeyStreamId(ADMIN_KEY_ID));
  if (state.status !== 'not_issued') {
    if (config.TOLLGATE_ADMIN_KEY && !(await keys.verify(config.TOLLGATE_ADMIN_KEY))) {
      log.warn('TOLLGATE_ADMIN_KEY is not the admin key bootstrapped on first start; the stored one stays in force');
    }
    return;
  }
  const given = config.TOLLGATE_ADMIN_KEY;
  if (given !== undefined && given.length < 32) throw new Error('TOLLGATE_ADMIN_KEY must be at least 32 characters');
  const secret = given ?? `tgadmin_${randomBytes(32).toString('base64url')}`;
  const issued = await keys.issue({
    keyId: ADMIN_KEY_ID,
    accountId: OPERATORS_ACCOUNT,
    name: 'bootstrap admin key',
    scopes: ['admin'],
    secret,
    metadata: systemMetadata('admin-bootstrap'),
  });
  if (!issued.ok) throw new Error(`admin key bootstrap refused: ${issued.error.error}`);
  log.info('bootstrapped the admin key');
  if (!given) {
    process.stdout.write(`\nTollgate admin key (shown once, store it now): ${secret}\n\n`);
  }
}
