import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Pool } from 'pg';
import { MasterKey, MasterKeyError, openPersonalDataVault, recordedMasterKey, type PersonalDataVault } from '../adapters/postgres/personal-data-vault';
import { masterKeyText, type Config } from './config';

/** Where the master key came from, for the log line and for rotation (which rewrites a generated file). */
export type MasterKeySource =
  | { readonly kind: 'environment' }
  | { readonly kind: 'file'; readonly path: string }
  | { readonly kind: 'data-dir'; readonly path: string; readonly generated: boolean };

/** The embedded default's key file. */
export function dataDirMasterKeyPath(config: Config): string {
  return join(config.TOLLGATE_DATA_DIR, 'master-key');
}

/** Reads and validates a key file; MasterKeyError with one line naming the file otherwise. */
export function readMasterKeyFile(path: string, variable = 'TOLLGATE_MASTER_KEY_FILE'): MasterKey {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new MasterKeyError(`invalid ${variable}: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const parsed = masterKeyText.safeParse(text);
  if (!parsed.success) throw new MasterKeyError(`invalid ${variable}: ${path} must hold 32 bytes as base64 (44 characters) or hex (64 digits)`);
  return new MasterKey(parsed.data);
}

/**
 * The configured master key (TOLLGATE_MASTER_KEY, TOLLGATE_MASTER_KEY_FILE) or, on the embedded
 * default only, <data dir>/master-key — a new one when there is none yet (written by
 * `keepGenerated` once the database proves to be new). With DATABASE_URL and no master key
 * configured, MasterKeyError: a shared database's keys never depend on a file nobody chose.
 */
export function resolveMasterKey(config: Config): { key: MasterKey; source: MasterKeySource } {
  if (config.TOLLGATE_MASTER_KEY) return { key: new MasterKey(config.TOLLGATE_MASTER_KEY), source: { kind: 'environment' } };
  if (config.TOLLGATE_MASTER_KEY_FILE) {
    return { key: readMasterKeyFile(config.TOLLGATE_MASTER_KEY_FILE), source: { kind: 'file', path: config.TOLLGATE_MASTER_KEY_FILE } };
  }
  if (config.DATABASE_URL) {
    throw new MasterKeyError(
      'no master key: with DATABASE_URL set TOLLGATE_MASTER_KEY or TOLLGATE_MASTER_KEY_FILE (32 bytes, base64 or hex; e.g. `openssl rand -base64 32`)',
    );
  }
  const path = dataDirMasterKeyPath(config);
  if (existsSync(path)) return { key: readMasterKeyFile(path, 'master key file'), source: { kind: 'data-dir', path, generated: false } };
  return { key: MasterKey.generate(), source: { kind: 'data-dir', path, generated: true } };
}

/**
 * The vault over an open database: the master key is resolved, checked against the database
 * (a wrong one stops here, nothing touched), a generated one is written to the data dir (mode
 * 0600) only when the database has no master key yet, and clear keys of earlier versions are
 * wrapped. Says in the log what it did.
 */
export async function openVault(
  config: Config,
  pool: Pool,
  log: { info(object: object, message: string): void; warn(object: object, message: string): void },
  resolved: { key: MasterKey; source: MasterKeySource } = resolveMasterKey(config),
): Promise<PersonalDataVault> {
  const { key, source } = resolved;
  if (source.kind === 'data-dir' && source.generated) {
    const recorded = await recordedMasterKey(pool);
    if (recorded) {
      throw new MasterKeyError(
        `the database's personal-data keys are wrapped under master key ${recorded.keyId}, but ${source.path} is missing; restore it from your backup (or set TOLLGATE_MASTER_KEY_FILE); nothing was changed`,
      );
    }
    mkdirSync(config.TOLLGATE_DATA_DIR, { recursive: true });
    writeFileSync(source.path, `${key.export()}\n`, { mode: 0o600, flag: 'wx' });
  }
  const { vault, wrapped, firstUse } = await openPersonalDataVault(pool, key);
  if (source.kind === 'data-dir' && source.generated) {
    log.warn(
      { masterKeyId: key.id, path: source.path },
      "generated a new master key for personal data; back it up: without it every account's personal data is unreadable",
    );
  } else if (firstUse) {
    log.info({ masterKeyId: key.id }, 'master key recorded for personal data');
  }
  if (wrapped > 0) log.info({ masterKeyId: key.id, wrapped }, 'wrapped clear personal-data keys of an earlier version under the master key');
  return vault;
}

/** Replaces a data-dir key file atomically (after a rotation of the embedded default's key). */
export function replaceDataDirMasterKey(path: string, key: MasterKey): void {
  const temporary = `${path}.new`;
  writeFileSync(temporary, `${key.export()}\n`, { mode: 0o600 });
  renameSync(temporary, path);
}
