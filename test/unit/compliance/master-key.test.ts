import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MasterKey, MasterKeyError } from '../../../adapters/postgres/personal-data-vault';
import { loadConfig } from '../../../src/config';
import { readMasterKeyFile, resolveMasterKey } from '../../../src/master-key';

describe('master key: envelope of the account keys', () => {
  const master = MasterKey.generate();
  const accountKey = randomBytes(32);

  test('wrap then unwrap gives the account key back; the wrapped bytes do not contain it', () => {
    const wrapped = master.wrapAccountKey('acct_1', accountKey);
    expect(wrapped.includes(accountKey)).toBe(false);
    expect(wrapped).toHaveLength(12 + 16 + 32);
    expect(master.unwrapAccountKey('acct_1', wrapped).equals(accountKey)).toBe(true);
  });

  test('a wrong master key does not open it (MasterKeyError, no key material in the message)', () => {
    const wrapped = master.wrapAccountKey('acct_1', accountKey);
    const other = MasterKey.generate();
    expect(() => other.unwrapAccountKey('acct_1', wrapped)).toThrow(MasterKeyError);
    expect(() => other.unwrapAccountKey('acct_1', wrapped)).toThrow(new RegExp(`master key ${other.id}`));
  });

  test('the account id is bound in: a wrapped key moved to another account does not open', () => {
    const wrapped = master.wrapAccountKey('acct_1', accountKey);
    expect(() => master.unwrapAccountKey('acct_2', wrapped)).toThrow(MasterKeyError);
  });

  test('a tampered wrapped key does not open', () => {
    const wrapped = master.wrapAccountKey('acct_1', accountKey);
    wrapped[40]! ^= 1;
    expect(() => master.unwrapAccountKey('acct_1', wrapped)).toThrow(MasterKeyError);
  });

  test('the check value tells the right key from a wrong one', () => {
    const check = master.checkValue();
    expect(master.opens(check)).toBe(true);
    expect(MasterKey.generate().opens(check)).toBe(false);
  });

  test('the key id is stable for a key, different between keys, and reveals nothing of the key', () => {
    const bytes = randomBytes(32);
    expect(new MasterKey(bytes).id).toBe(new MasterKey(Buffer.from(bytes)).id);
    expect(new MasterKey(bytes).id).toMatch(/^[0-9a-f]{16}$/);
    expect(MasterKey.generate().id).not.toBe(new MasterKey(bytes).id);
    expect(bytes.toString('hex')).not.toContain(new MasterKey(bytes).id);
  });
});

describe('master key configuration', () => {
  const bytes = randomBytes(32);

  test('TOLLGATE_MASTER_KEY as base64 or hex', () => {
    expect(loadConfig({ TOLLGATE_MASTER_KEY: bytes.toString('base64') }).TOLLGATE_MASTER_KEY).toEqual(bytes);
    expect(loadConfig({ TOLLGATE_MASTER_KEY: bytes.toString('hex') }).TOLLGATE_MASTER_KEY).toEqual(bytes);
  });

  test('a key of the wrong length or alphabet is refused with one line naming the variable, never echoing the value', () => {
    for (const value of [randomBytes(16).toString('base64'), 'not a key', randomBytes(31).toString('hex')]) {
      let message = '';
      try {
        loadConfig({ TOLLGATE_MASTER_KEY: value });
      } catch (error) {
        message = (error as Error).message;
      }
      expect(message).toBe('invalid TOLLGATE_MASTER_KEY: 32 bytes as base64 (44 characters) or hex (64 digits)');
    }
  });

  test('both the key and a key file: refused', () => {
    expect(() => loadConfig({ TOLLGATE_MASTER_KEY: bytes.toString('hex'), TOLLGATE_MASTER_KEY_FILE: '/x' })).toThrow(
      /^invalid TOLLGATE_MASTER_KEY_FILE: set TOLLGATE_MASTER_KEY or TOLLGATE_MASTER_KEY_FILE, not both$/,
    );
  });

  test('a key file is read; a missing or malformed one is a clear line naming the file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-mk-'));
    const good = join(dir, 'good');
    writeFileSync(good, `${bytes.toString('base64')}\n`);
    expect(readMasterKeyFile(good).id).toBe(new MasterKey(bytes).id);
    const bad = join(dir, 'bad');
    writeFileSync(bad, 'hello\n');
    expect(() => readMasterKeyFile(bad)).toThrow(`invalid TOLLGATE_MASTER_KEY_FILE: ${bad} must hold 32 bytes as base64 (44 characters) or hex (64 digits)`);
    expect(() => readMasterKeyFile(join(dir, 'none'))).toThrow(/^invalid TOLLGATE_MASTER_KEY_FILE: cannot read .*none \(ENOENT\)$/);
  });

  test('with DATABASE_URL and no master key: refused, saying what to set', () => {
    expect(() => resolveMasterKey(loadConfig({ DATABASE_URL: 'postgres://x@127.0.0.1/x' }))).toThrow(
      /^no master key: with DATABASE_URL set TOLLGATE_MASTER_KEY or TOLLGATE_MASTER_KEY_FILE/,
    );
  });

  test('the embedded default without a key file: a new key, to be written to <data dir>/master-key', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-mk-'));
    const resolved = resolveMasterKey(loadConfig({ TOLLGATE_DATA_DIR: dir }));
    expect(resolved.source).toEqual({ kind: 'data-dir', path: join(dir, 'master-key'), generated: true });
  });
});
