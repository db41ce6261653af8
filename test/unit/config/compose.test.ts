import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { parse } from 'yaml';
import { spawn, spawnSync } from 'node:child_process';
import { ConfigError, accountRateLimits, configSchema, loadConfig } from '../../../src/config';
import { HAPROXY_BIN } from '../../support/haproxy';
import { compiledEntryPoint } from '../../support/processes';

function inSubnet(address: string, cidr: string): boolean {
  const [base, bits] = cidr.split('/');
  const toInt = (ip: string) => ip.split('.').reduce((n, part) => n * 256 + Number(part), 0);
  const mask = 2 ** 32 - 2 ** (32 - Number(bits));
  return (toInt(address) & mask) >>> 0 === (toInt(base!) & mask) >>> 0;
}

interface Service {
  image?: string;
  profiles?: string[];
  deploy?: { replicas?: number };
  expose?: string[];
  networks?: string[] | Record<string, { ipv4_address?: string } | null>;
  environment?: Record<string, string>;
  ports?: string[];
  restart?: string;
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
  volumes?: (string | { type: string; source: string; target: string; read_only?: boolean; bind?: { create_host_path?: boolean } })[];
  stop_grace_period?: string;
}

const compose = parse(readFileSync(resolve(__dirname, '../../../docker-compose.yml'), 'utf8')) as {
  services: Record<string, Service>;
  networks: Record<string, { ipam: { config: { subnet: string }[] } }>;
};
/** ${VAR:-default} as compose substitutes it with VAR unset: the default ('' for ${VAR:-}). */
const unset = (value: string) => value.replace(/\$\{[^}:]+:-([^}]*)\}/g, '$1');
const gateway = compose.services.gateway!;

describe('docker-compose.yml', () => {
  test('defines postgres, kurrentdb (one node, or three in the kurrentdb-cluster profile), the gateway and lb', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['gateway', 'kurrentdb', 'kurrentdb-1', 'kurrentdb-2', 'kurrentdb-3', 'lb', 'postgres']);
    expect(
      Object.entries(compose.services)
        .filter(([, s]) => s.profiles)
        .map(([name, s]) => [name, s.profiles]),
    ).toEqual([
      ['kurrentdb-1', ['kurrentdb-cluster']],
      ['kurrentdb-2', ['kurrentdb-cluster']],
      ['kurrentdb-3', ['kurrentdb-cluster']],
    ]);
  });

  test('two gateway replicas, reached only through HAProxy, which trusts no one else for X-Forwarded-For', () => {
    expect(gateway.deploy?.replicas).toBe(2);
    expect(gateway.ports).toBeUndefined(); // two replicas cannot both publish 8080
    expect(gateway.expose).toEqual([gateway.environment!.PORT]);
    const lb = compose.services.lb!;
    expect(lb.ports).toEqual([`8080:${gateway.environment!.PORT}`]);
    expect(lb.volumes).toEqual(['./deploy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro']);
    const lbAddress = (lb.networks as Record<string, { ipv4_address: string }>).default!.ipv4_address;
    expect(loadConfig({ TOLLGATE_TRUSTED_PROXIES: gateway.environment!.TOLLGATE_TRUSTED_PROXIES }).TOLLGATE_TRUSTED_PROXIES).toEqual([lbAddress]);
    expect(inSubnet(lbAddress, compose.networks.default!.ipam.config[0]!.subnet)).toBe(true);
  });

  test("deploy/haproxy.cfg: HAProxy's own check passes; it balances over the gateway service, checking /readyz on its port, retrying refused connections elsewhere", () => {
    const cfg = readFileSync(resolve(__dirname, '../../../deploy/haproxy.cfg'), 'utf8');
    expect(cfg).toMatch(/option httpchk GET \/readyz\n\s*http-check expect status 200/);
    expect(cfg).toContain(`server-template gateway 10 gateway:${gateway.environment!.PORT} check`);
    expect(cfg).toMatch(/bind :8080\n/);
    expect(cfg).toContain('retry-on conn-failure empty-response');
    expect(cfg).toContain('option forwardfor');
    // Debian's haproxy, which .ci/run installs (the image's is the same major line).
    const checked = spawnSync(HAPROXY_BIN, ['-c', '-f', resolve(__dirname, '../../../deploy/haproxy.cfg')], { encoding: 'utf8' });
    expect({ status: checked.status, error: checked.error?.message }).toEqual({ status: 0, error: undefined });
  });

  test('the kurrentdb-cluster profile: three nodes, each seeded with the other two at their fixed addresses; the gateway reaches them and its URL parses', () => {
    const nodes = ['kurrentdb-1', 'kurrentdb-2', 'kurrentdb-3'].map((name) => compose.services[name]!);
    const addresses = nodes.map((node) => (node.networks as Record<string, { ipv4_address: string }>)['kurrentdb-cluster']!.ipv4_address);
    nodes.forEach((node, i) => {
      expect(node.image).toBe(compose.services.kurrentdb!.image);
      expect(node.environment).toMatchObject({ KURRENTDB_CLUSTER_SIZE: '3', KURRENTDB_REPLICATION_IP: addresses[i], KURRENTDB_NODE_PORT: '2113' });
      expect(node.environment!.KURRENTDB_GOSSIP_SEED!.split(',').sort()).toEqual(addresses.filter((_, j) => j !== i).map((a) => `${a}:2113`));
      expect(inSubnet(addresses[i]!, compose.networks['kurrentdb-cluster']!.ipam.config[0]!.subnet)).toBe(true);
    });
    expect(gateway.networks).toEqual(['default', 'kurrentdb-cluster']);
    const header = readFileSync(resolve(__dirname, '../../../docker-compose.yml'), 'utf8');
    const url = /EVENTSTORE_URL='([^']+)'/.exec(header)![1]!;
    expect(url).toBe('esdb://kurrentdb-1:2113,kurrentdb-2:2113,kurrentdb-3:2113?tls=false');
    expect(loadConfig({ EVENTSTORE_URL: url }).EVENTSTORE_URL).toBe(url);
  });

  test('every gateway variable is one the config code reads, and the values parse', () => {
    const environment = compose.services.gateway!.environment!;
    const known = Object.keys(configSchema.shape);
    expect(Object.keys(environment).filter((name) => !known.includes(name))).toEqual([]);
    // ${VAR:-} substitutions become empty strings, which the config treats as unset.
    const substituted = Object.fromEntries(Object.entries(environment).map(([k, v]) => [k, unset(v)]));
    const config = loadConfig(substituted);
    expect(config.DATABASE_URL).toBe('postgres://tollgate:tollgate@postgres:5432/tollgate');
    expect(config.EVENTSTORE_URL).toBe('esdb://kurrentdb:2113?tls=false');
    // The image requires a models file: the compose environment gives one.
    expect(loadConfig({ ...substituted, TOLLGATE_REQUIRE_MODELS_FILE: 'true' }).TOLLGATE_MODELS_FILE).toBe('/etc/tollgate/models');
  });

  test('the databases publish their ports on loopback only', () => {
    for (const name of ['postgres', 'kurrentdb', 'kurrentdb-1', 'kurrentdb-2', 'kurrentdb-3']) {
      const ports = compose.services[name]!.ports ?? [];
      expect(ports.length).toBeGreaterThan(0);
      for (const port of ports) expect([name, port]).toEqual([name, expect.stringMatching(/^127\.0\.0\.1:\d+:\d+$/)]);
    }
  });

  test('every service restarts on its own and has a healthcheck; the gateway waits for healthy databases', () => {
    for (const [name, service] of Object.entries(compose.services)) {
      expect([name, service.restart]).toEqual([name, expect.stringMatching(/^(always|unless-stopped|on-failure(:\d+)?)$/)]);
      expect([name, (service.healthcheck?.test.length ?? 0) > 1]).toEqual([name, true]);
    }
    expect(gateway.depends_on).toEqual({ postgres: { condition: 'service_healthy' }, kurrentdb: { condition: 'service_healthy' } });
  });

  test('the models file is mounted read-only where TOLLGATE_MODELS_FILE points, and a missing one is not made up', () => {
    const mounts = (gateway.volumes ?? []).filter((v) => typeof v === 'object' && v.target === gateway.environment!.TOLLGATE_MODELS_FILE);
    expect(mounts).toEqual([
      expect.objectContaining({
        type: 'bind',
        read_only: true,
        bind: { create_host_path: false },
        source: expect.stringMatching(/^\$\{TOLLGATE_MODELS_PATH:-.+\}$/),
      }),
    ]);
  });

  test("the gateway's stop grace period outlasts its default drain timeout", () => {
    const grace = /^(\d+)s$/.exec(gateway.stop_grace_period ?? '');
    expect(grace).not.toBeNull();
    expect(Number(grace![1])).toBeGreaterThan(loadConfig({}).TOLLGATE_DRAIN_TIMEOUT_S);
  });

  test("the gateway's healthcheck (node's fetch: the slim image has no curl) passes on a ready /readyz only", async () => {
    const [kind, command, flag, script] = gateway.healthcheck!.test;
    expect([kind, command, flag]).toEqual(['CMD', 'node', '-e']);
    const target = new URL(/fetch\('([^']+)'\)/.exec(script!)![1]!);
    expect(target.pathname).toBe('/readyz');
    expect(target.port).toBe(gateway.environment!.PORT);
    // Run the very script against a server answering as /readyz does, on a free port.
    let status = 200;
    const paths: string[] = [];
    const server = createServer((request, response) => {
      paths.push(request.url!);
      response.writeHead(status, { 'content-type': 'application/json' }).end('{}');
    });
    await new Promise<void>((listening) => server.listen(0, '127.0.0.1', listening));
    const port = (server.address() as AddressInfo).port;
    const run = () =>
      new Promise<number | null>((done) => {
        spawn(process.execPath, ['-e', script!.replace(`:${target.port}/`, `:${port}/`)], { stdio: 'ignore' }).on('exit', done);
      });
    try {
      expect(await run()).toBe(0);
      status = 503;
      expect(await run()).toBe(1);
    } finally {
      await new Promise((closed) => server.close(closed));
    }
    expect(paths).toEqual(['/readyz', '/readyz']);
    expect(await run()).toBe(1); // nothing listening
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

  test("per-account rate limits default to the per-key ones; a key's limit above its account's stops start-up", () => {
    expect(accountRateLimits(loadConfig({}))).toEqual({ requestsPerMinute: null, tokensPerMinute: null });
    expect(accountRateLimits(loadConfig({ TOLLGATE_RATE_LIMIT_RPM: '', TOLLGATE_ACCOUNT_RATE_LIMIT_RPM: ' ' }))).toEqual({
      requestsPerMinute: null,
      tokensPerMinute: null,
    });
    expect(accountRateLimits(loadConfig({ TOLLGATE_RATE_LIMIT_RPM: '60', TOLLGATE_RATE_LIMIT_TPM: '1000' }))).toEqual({
      requestsPerMinute: 60,
      tokensPerMinute: 1000,
    });
    expect(accountRateLimits(loadConfig({ TOLLGATE_RATE_LIMIT_RPM: '60', TOLLGATE_ACCOUNT_RATE_LIMIT_RPM: '200' }))).toEqual({
      requestsPerMinute: 200,
      tokensPerMinute: null,
    });
    expect(() => loadConfig({ TOLLGATE_RATE_LIMIT_TPM: '5000', TOLLGATE_ACCOUNT_RATE_LIMIT_TPM: '4000' })).toThrow(
      new ConfigError("invalid TOLLGATE_RATE_LIMIT_TPM: 5000 is above TOLLGATE_ACCOUNT_RATE_LIMIT_TPM (4000); a key's limit must be within its account's"),
    );
    expect(loadConfig({ TOLLGATE_TRUSTED_PROXIES: ' 127.0.0.1, ::1 ' }).TOLLGATE_TRUSTED_PROXIES).toEqual(['127.0.0.1', '::1']);
    expect(loadConfig({}).TOLLGATE_TRUSTED_PROXIES).toEqual([]);
    expect(() => loadConfig({ TOLLGATE_TRUSTED_PROXIES: 'haproxy' })).toThrow(/^invalid TOLLGATE_TRUSTED_PROXIES: /);
  });

  test('TOLLGATE_REQUIRE_MODELS_FILE=true (the production image) without a models file stops start-up with one line', () => {
    const line =
      'invalid TOLLGATE_MODELS_FILE: required when TOLLGATE_REQUIRE_MODELS_FILE=true (as in the production image); the mock-llm stand-in upstream is for local trials only';
    expect(() => loadConfig({ TOLLGATE_REQUIRE_MODELS_FILE: 'true' })).toThrow(new ConfigError(line));
    expect(() => loadConfig({ TOLLGATE_REQUIRE_MODELS_FILE: 'true', TOLLGATE_MODELS_FILE: '  ' })).toThrow(new ConfigError(line));
    expect(loadConfig({ TOLLGATE_REQUIRE_MODELS_FILE: 'true', TOLLGATE_MODELS_FILE: 'models.yaml' }).TOLLGATE_MODELS_FILE).toBe('models.yaml');
    expect(loadConfig({}).TOLLGATE_REQUIRE_MODELS_FILE).toBe(false); // a local trial may use the stand-in
    expect(() => loadConfig({ TOLLGATE_REQUIRE_MODELS_FILE: 'yes' })).toThrow(/^invalid TOLLGATE_REQUIRE_MODELS_FILE: /);
  });

  test('the gateway refuses to start on such a setting, with the line on stderr and exit code 2', () => {
    const result = spawnSync(process.execPath, [compiledEntryPoint('src/main.ts')], {
      env: { ...process.env, TOLLGATE_MAX_REQUEST_DURATION_S: '30', TOLLGATE_UPSTREAM_IDLE_TIMEOUT_S: '20' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('invalid TOLLGATE_UPSTREAM_HEADERS_TIMEOUT_S: 600 s must be shorter than TOLLGATE_MAX_REQUEST_DURATION_S (30 s)');
  }, 60_000);
});
