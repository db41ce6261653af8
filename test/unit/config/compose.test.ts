import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse } from 'yaml';
import { configSchema, loadConfig } from '../../../src/config';

const compose = parse(readFileSync(resolve(__dirname, '../../../docker-compose.yml'), 'utf8')) as {
  services: Record<string, { environment?: Record<string, string> }>;
};

describe('docker-compose.yml', () => {
  test('defines postgres, kurrentdb and the gateway', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['gateway', 'kurrentdb', 'postgres']);
  });

  test('every gateway variable is one the config code reads, and the values parse', () => {
    const environment = compose.services.gateway!.environment!;
    const known = Object.keys(configSchema.shape);
    expect(Object.keys(environment).filter((name) => !known.includes(name))).toEqual([]);
    // ${VAR:-} substitutions become empty strings, which the config treats as unset.
    const substituted = Object.fromEntries(Object.entries(environment).map(([k, v]) => [k, v.replace(/\$\{[^}]+:-\}/g, '')]));
    const config = loadConfig(substituted);
    expect(config.DATABASE_URL).toBe('postgres://tollgate:tollgate@postgres:5432/tollgate');
    expect(config.EVENTSTORE_URL).toBe('esdb://kurrentdb:2113?tls=false');
  });
});

describe('configuration', () => {
  test('defaults need nothing set: embedded PostgreSQL, port 8080', () => {
    const config = loadConfig({});
    expect(config.DATABASE_URL).toBeUndefined();
    expect(config.PORT).toBe(8080);
    expect(config.TOLLGATE_MIN_TOP_UP_USD).toBe('10');
  });

  test('each wrong value is reported on its own line naming the variable', () => {
    expect(() => loadConfig({ PORT: '99999', DATABASE_URL: 'mysql://x' })).toThrow(
      /invalid DATABASE_URL: .*\ninvalid PORT: |invalid PORT: .*\ninvalid DATABASE_URL: /,
    );
  });
});
