import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { spawnEmbeddedGateway, stopEmbeddedGateway } from '../support/e2e-processes';
import { freePort } from '../support/mock-llm';
import { until } from '../support/wait';

/**
 * `npm start` with nothing configured: embedded PostgreSQL, the stand-in upstream, a demo
 * account. As `npm start` does, it runs the compiled gateway (dist/src/main.js, which the test
 * run's global setup builds), so a build that compiles but cannot start fails here. No master key
 * is configured either (the suite's own is blanked): the embedded default generates one.
 */
const start = (dataDir: string, pgPort: number, port: number) => spawnEmbeddedGateway({ dataDir, pgPort, port, env: { TOLLGATE_MASTER_KEY: '' } });

describe('first run', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'tollgate-first-run-'));
  // The embedded server runs as the `postgres` user when we are root: it must reach the directory.
  chmodSync(dataDir, 0o755);
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  test('with nothing configured, a newcomer makes a real chat completion with the openai client, and a restart keeps the data', async () => {
    const began = Date.now();
    const [pgPort, port] = [await freePort(), await freePort()];
    const first = start(join(dataDir, 'state'), pgPort, port);
    let key: string;
    let masterKey = '';
    try {
      key = await until(() => /^\s+(tg_[A-Za-z0-9]{16}_[A-Za-z0-9_-]{43})\s*$/m.exec(first.output())?.[1], {
        what: 'the printed demo key',
        timeoutMs: 120_000,
      });
      await until(() => (first.output().includes('tollgate is listening') || /curl http/.test(first.output()) ? true : undefined), {
        what: 'the curl line',
        timeoutMs: 120_000,
      });
      expect(first.output()).toMatch(/STAND-IN upstream \(mock-llm\)/);
      // The embedded default made its own master key, beside the data, readable by the owner only, and said so.
      const masterKeyFile = join(dataDir, 'state', 'master-key');
      expect(statSync(masterKeyFile).mode & 0o777).toBe(0o600);
      expect(readFileSync(masterKeyFile, 'utf8')).toMatch(/^[A-Za-z0-9+/]{43}=\n$/);
      const keyLine = first
        .output()
        .split('\n')
        .find((line) => line.includes('generated a new master key for personal data; back it up'));
      expect(keyLine).toContain(masterKeyFile);
      masterKey = readFileSync(masterKeyFile, 'utf8');
      expect(first.output()).toMatch(/Tollgate admin key \(shown once, store it now\): tgadmin_/);
      expect(first.output()).toContain(`curl http://127.0.0.1:${port}/v1/chat/completions -H "Authorization: Bearer ${key}"`);
      expect(first.output()).toContain(`Dashboard: http://127.0.0.1:${port}/dashboard/`);
      // No SMTP_URL: the banner says where the emails go instead.
      expect(first.output()).toContain(`no SMTP_URL. They are written to ${join(dataDir, 'state', 'outbox')}/*.eml`);

      const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: key, maxRetries: 0 });
      const reply = await client.chat.completions.create({ model: 'tollgate-demo', messages: [{ role: 'user', content: 'Hello' }] });
      expect(reply.choices[0]!.message.content).toContain('stand-in upstream');
      // The time to a first answer is reported, not judged (it depends on the machine).
      process.stdout.write(`first run: first chat completion ${((Date.now() - began) / 1_000).toFixed(1)} s after start\n`);

      // The dashboard's files, which the compiled gateway finds beside itself (dist/) and in node_modules.
      const page = await fetch(`http://127.0.0.1:${port}/dashboard/`);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('<script type="importmap">');
      for (const path of ['/dashboard/static/app.js', '/dashboard/static/style.css', '/dashboard/vendor/preact.mjs', '/dashboard/vendor/uPlot.esm.js']) {
        const asset = await fetch(`http://127.0.0.1:${port}${path}`);
        expect({ path, status: asset.status }).toEqual({ path, status: 200 });
        expect((await asset.text()).length).toBeGreaterThan(100);
      }
    } finally {
      expect(await stopEmbeddedGateway(first)).toEqual({ code: 0, signal: null });
    }

    // Same data directory again: the same database, the same demo key, no new admin key.
    const second = start(join(dataDir, 'state'), pgPort, port);
    try {
      await until(() => (second.output().includes(key) ? true : undefined), { what: 'the demo key printed again', timeoutMs: 120_000 });
      expect(second.output()).not.toContain('Tollgate admin key (shown once');
      // The same master key: not generated again, and the demo account's data still opens (the start would stop otherwise).
      expect(second.output()).not.toContain('generated a new master key');
      expect(readFileSync(join(dataDir, 'state', 'master-key'), 'utf8')).toBe(masterKey);
      const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: key, maxRetries: 0 });
      const account = await fetch(`http://127.0.0.1:${port}/v1/account`, { headers: { authorization: `Bearer ${key}` } }).then(
        (r) => r.json() as Promise<{ balance_usd: string }>,
      );
      // USD 5 of promo less the first request: 12 prompt tokens at USD 0.50/M + 21 completion
      // tokens at USD 1.50/M = 37.5 micro-USD, rounded up once to 38.
      expect(account.balance_usd).toBe('4.999962');
      await client.chat.completions.create({ model: 'tollgate-demo', messages: [{ role: 'user', content: 'Again' }] });
    } finally {
      expect(await stopEmbeddedGateway(second)).toEqual({ code: 0, signal: null });
    }
  }, 400_000);
});
