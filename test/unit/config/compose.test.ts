import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse } from 'yaml';
import { spawnSync } from 'node:child_process';
import { ConfigError, configSchema, loadConfig } from '../../../src/config';

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

  test('an upstream timeout not shorter than the maximum request duration stops start-up, naming both variables', () => {
    expect(() => loadConfig({ TOLLGATE_MAX_REQUEST_DURATION_S: '300' })).toThrow(
      new ConfigError(
        'invalid TOLLGATE_UPSTREAM_HEADERS_TIMEOUT_S: 600 s must be shorter than TOLLGATE_MAX_REQUEST_DURATION_S (300 s); raise TOLLGATE_MAX_REQUEST_DURATION_S or lower TOLLGATE_UPSTREAM_HEADERS_TIMEOUT_S',
      ),
    );
    expect(() => loadConfig({ TOLLGATE_MAX_REQUEST_DURATION_S: '120', TOLLGATE_UPSTREAM_HEADERS_TIMEOUT_S: '60' })).toThrow(
      /^invalid TOLLGATE_UPSTREAM_IDLE_TIMEOUT_S: 120 s must be shorter than TOLLGATE_MAX_REQUEST_DURATION_S \(120 s\)/,
    );
    const fits = loadConfig({ TOLLGATE_MAX_REQUEST_DURATION_S: '61', TOLLGATE_UPSTREAM_HEADERS_TIMEOUT_S: '60', TOLLGATE_UPSTREAM_IDLE_TIMEOUT_S: '60' });
    expect(fits.TOLLGATE_MAX_REQUEST_DURATION_S).toBe(61);
    expect(loadConfig({}).TOLLGATE_INSTANCE_LEASE_S).toBe(10);
  });

  test('the gateway refuses to start on such a setting, with the line on stderr and exit code 2', () => {
    const result = spawnSync(process.execPath, ['--import', 'tsx', resolve(__dirname, '../../../src/main.ts')], {
      env: { ...process.env, TOLLGATE_MAX_REQUEST_DURATION_S: '30', TOLLGATE_UPSTREAM_IDLE_TIMEOUT_S: '20' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('invalid TOLLGATE_UPSTREAM_HEADERS_TIMEOUT_S: 600 s must be shorter than TOLLGATE_MAX_REQUEST_DURATION_S (30 s)');
  }, 60_000);
});
