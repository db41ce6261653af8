import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { accountStreamId } from '../domain/account';
import { addMs } from '../domain/time';
import { usd } from '../domain/money';
import { PRICE_BOOK_STREAM_ID, type Operation } from '../domain/price-book';
import { launchMockLlm, STAND_IN_MODEL, standInConfig } from '../adapters/inference/mock-llm-process';
import type { ModelSpec } from '../adapters/inference';
import type { PersonalDataVault } from '../adapters/postgres/personal-data-vault';
import type { ApiKeys } from './api-keys';
import { systemMetadata } from './command-metadata';
import type { Config } from './config';
import type { Ledger } from './ledger';
import type { MailTransport } from './ports/mail-transport';

export interface FirstRun {
  /** the stand-in upstream's model, to serve instead of a models file */
  readonly models: readonly ModelSpec[];
  readonly demoAccountId: string;
  /** what to tell the newcomer once the gateway listens at `url` */
  banner(url: string): string;
  stop(): Promise<void>;
}

export const DEMO_ACCOUNT_ID = 'demo';
const DEMO_PROMO = usd('5');
const STAND_IN_PRICES: Record<Operation, { input: string; output: string }> = {
  chat: { input: '0.50', output: '1.50' },
  completion: { input: '0.50', output: '1.50' },
  embedding: { input: '0.02', output: '0' },
};

/**
 * With no models file, Tollgate still works out of the box: it starts `@dwmkerr/mock-llm` as a
 * clearly labelled stand-in upstream, prices its model, opens a demo account with promo credit
 * and a key, and prints a curl line that works. A models file turns all of this off.
 */
export async function firstRun(
  ledger: Ledger,
  keys: ApiKeys,
  vault: PersonalDataVault,
  config: Config,
  log: Logger,
  mail?: Pick<MailTransport, 'kind' | 'describe'>,
): Promise<FirstRun> {
  const standIn = await launchMockLlm(standInConfig(), await freePort());
  log.warn({ upstream: standIn.baseUrl, model: STAND_IN_MODEL }, 'no TOLLGATE_MODELS_FILE: serving the mock-llm STAND-IN upstream (not a real model)');
  const models: ModelSpec[] = [
    { id: STAND_IN_MODEL, upstreams: [{ baseUrl: standIn.baseUrl, capacity: 256 }], maxOutputTokens: 4_096, operations: ['chat', 'completion', 'embedding'] },
  ];

  const { state: book } = await ledger.priceBook.load(PRICE_BOOK_STREAM_ID);
  if (!book.models.has(STAND_IN_MODEL)) {
    await expectOk(
      ledger.priceBook.handle(PRICE_BOOK_STREAM_ID, {
        type: 'AddModel',
        data: { modelId: STAND_IN_MODEL, operations: ['chat', 'completion', 'embedding'], maxOutputTokens: 4_096n },
        metadata: systemMetadata('first-run'),
      }),
    );
    for (const [operation, price] of Object.entries(STAND_IN_PRICES) as [Operation, { input: string; output: string }][]) {
      await expectOk(
        ledger.priceBook.handle(PRICE_BOOK_STREAM_ID, {
          type: 'SetPrice',
          data: { modelId: STAND_IN_MODEL, operation, inputPerMillion: usd(price.input), outputPerMillion: usd(price.output) },
          metadata: systemMetadata('first-run'),
        }),
      );
    }
  }

  const stream = accountStreamId(DEMO_ACCOUNT_ID);
  const { state: account } = await ledger.accounts.load(stream);
  if (account.status === 'not_opened') {
    await expectOk(
      ledger.accounts.handle(stream, {
        type: 'OpenAccount',
        data: {
          accountId: DEMO_ACCOUNT_ID,
          displayNameCiphertext: await vault.encrypt(DEMO_ACCOUNT_ID, 'Demo account'),
          emailCiphertext: await vault.encrypt(DEMO_ACCOUNT_ID, 'demo@localhost'),
        },
        metadata: systemMetadata('first-run'),
      }),
    );
    const now = new Date().toISOString();
    await expectOk(
      ledger.accounts.handle(stream, {
        type: 'GrantPromoCredit',
        data: { grantId: 'demo-welcome', amount: DEMO_PROMO, expiresAt: addMs(now, 90 * 24 * 3_600_000), reason: 'demo account on first run' },
        metadata: systemMetadata('first-run'),
      }),
    );
  }

  // The demo key is kept beside the embedded database (mode 0600) so every start can show it.
  mkdirSync(config.TOLLGATE_DATA_DIR, { recursive: true });
  const keyFile = join(config.TOLLGATE_DATA_DIR, 'demo-key');
  let demoKey = existsSync(keyFile) ? readFileSync(keyFile, 'utf8').trim() : undefined;
  if (!demoKey || !(await keys.verify(demoKey))) {
    const issued = await keys.issue({
      accountId: DEMO_ACCOUNT_ID,
      name: 'demo key',
      scopes: ['inference', 'account_read', 'account_write'],
      metadata: systemMetadata('first-run'),
    });
    if (!issued.ok) throw new Error(`demo key refused: ${issued.error.error}`);
    demoKey = issued.key.secret;
    writeFileSync(keyFile, `${demoKey}\n`, { mode: 0o600 });
  }
  const key = demoKey;
  const banner = (url: string) =>
    [
      '',
      '  Tollgate is serving a STAND-IN upstream (mock-llm): answers are canned, not a real model.',
      `  Demo account "${DEMO_ACCOUNT_ID}" has USD 5 of promo credit. Its key (also in ${keyFile}):`,
      '',
      `    ${key}`,
      '',
      '  Try it:',
      `    curl ${url}/v1/chat/completions -H "Authorization: Bearer ${key}" \\`,
      `      -H "Content-Type: application/json" -d '{"model":"${STAND_IN_MODEL}","messages":[{"role":"user","content":"Hello"}]}'`,
      '',
      `  Or with the openai client: new OpenAI({ baseURL: "${url}/v1", apiKey: "<the key above>" })`,
      `  Dashboard: ${url}/dashboard/ (sign in with the key above, or the admin key)`,
      '  Set TOLLGATE_MODELS_FILE to serve real upstreams instead.',
      ...(mail?.kind === 'file'
        ? [`  Emails (sign-up verification, password resets) are not sent: no SMTP_URL. They are written to ${mail.describe}/*.eml`]
        : []),
      '',
    ].join('\n') + '\n';
  return { models, demoAccountId: DEMO_ACCOUNT_ID, banner, stop: () => standIn.stop() };
}

async function expectOk(result: Promise<{ ok: boolean; error?: { error: string } }>): Promise<void> {
  const settled = await result;
  if (!settled.ok) throw new Error(`first-run setup refused: ${settled.error?.error}`);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
