import type { Pool } from 'pg';
import { MasterKey, openPersonalDataVault, type PersonalDataVault } from '../../adapters/postgres/personal-data-vault';

/**
 * The master key every test deployment uses (global-setup puts it in TOLLGATE_MASTER_KEY, so
 * gateways and CLIs started as child processes have it too). Tests of a wrong or missing key
 * override it.
 */
export const TEST_MASTER_KEY = 'dG9sbGdhdGUtdGVzdC1tYXN0ZXIta2V5LTMyLWJ5dGU=';

/** The vault a gateway over `pool` would use (the master key checked, and recorded on first use). */
export async function testVault(pool: Pool, key = TEST_MASTER_KEY): Promise<PersonalDataVault> {
  return (await openPersonalDataVault(pool, new MasterKey(Buffer.from(key, 'base64')))).vault;
}
