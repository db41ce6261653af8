import { randomBytes } from 'node:crypto';
import OpenAI from 'openai';
import { Client } from 'pg';
import { accountStreamId, evolveAccount, initialAccountState, type AccountEvent, type AccountState } from '../../domain/account';
import type { ApiKeyScope } from '../../domain/api-key';
import type { DomainEvent } from '../../domain/events';
import { usd, type MicroUsd } from '../../domain/money';
import { PRICE_BOOK_STREAM_ID, type Operation } from '../../domain/price-book';
import type { ApiKeys } from '../../src/api-keys';
import { systemMetadata } from '../../src/command-metadata';
import type { Ledger } from '../../src/ledger';
import { requestLogStreamId, type RequestLogEntry } from '../../domain/request-log';

/**
 * Setup for the end-to-end tests straight through the gateway's own objects (ledger, keys),
 * so the tests depend on nothing but the inference path and the deciders.
 */

export interface PriceUsd {
  /** USD per million input tokens, e.g. "0.50" */
  readonly input: string;
  readonly output: string;
}

export async function addModel(ledger: Ledger, modelId: string, prices: Partial<Record<Operation, PriceUsd>>, maxOutputTokens = 4_096): Promise<void> {
  const operations = Object.keys(prices) as Operation[];
  ok(
    await ledger.priceBook.handle(PRICE_BOOK_STREAM_ID, {
      type: 'AddModel',
      data: { modelId, operations, maxOutputTokens: BigInt(maxOutputTokens) },
      metadata: systemMetadata('test'),
    }),
    `AddModel ${modelId}`,
  );
  for (const operation of operations) {
    const price = prices[operation]!;
    ok(
      await ledger.priceBook.handle(PRICE_BOOK_STREAM_ID, {
        type: 'SetPrice',
        data: { modelId, operation, inputPerMillion: usd(price.input), outputPerMillion: usd(price.output) },
        metadata: systemMetadata('test'),
      }),
      `SetPrice ${modelId} ${operation}`,
    );
  }
}

/** Opens an account (ciphertexts are opaque to the domain) and tops it up by `topUpUsd`, if given. */
export async function openAccount(ledger: Ledger, options: { topUpUsd?: string; accountId?: string } = {}): Promise<string> {
  const accountId = options.accountId ?? `acc-${randomBytes(6).toString('hex')}`;
  const stream = accountStreamId(accountId);
  ok(
    await ledger.accounts.handle(stream, {
      type: 'OpenAccount',
      data: { accountId, displayNameCiphertext: 'test-ciphertext', emailCiphertext: 'test-ciphertext' },
      metadata: systemMetadata('test'),
    }),
    'OpenAccount',
  );
  if (options.topUpUsd !== undefined) await topUp(ledger, accountId, options.topUpUsd);
  return accountId;
}

export async function topUp(ledger: Ledger, accountId: string, amountUsd: string): Promise<void> {
  ok(
    await ledger.accounts.handle(accountStreamId(accountId), {
      type: 'CompleteTopUp',
      data: { paymentReference: `pay-${randomBytes(6).toString('hex')}`, amount: usd(amountUsd) },
      metadata: systemMetadata('test'),
    }),
    'CompleteTopUp',
  );
}

/** Issues a key for the account; returns the whole secret and its id. */
export async function issueKey(keys: ApiKeys, accountId: string, scopes: readonly ApiKeyScope[] = ['inference']): Promise<{ keyId: string; secret: string }> {
  const issued = await keys.issue({ accountId, name: 'e2e key', scopes, metadata: systemMetadata('test') });
  if (!issued.ok) throw new Error(`key refused: ${issued.error.error}`);
  return { keyId: issued.key.keyId, secret: issued.key.secret };
}

/** The account's events as stored, read back from the event store (not from any cache). */
export async function accountEvents(ledger: Ledger, accountId: string): Promise<AccountEvent[]> {
  const { events } = await ledger.store.readStream(accountStreamId(accountId));
  return events.map((recorded) => recorded.event as DomainEvent as AccountEvent);
}

/**
 * The request log's entry for a request that ended at `endedAt` (its day's stream), read from the
 * store; undefined when there is none. The wallet events no longer carry request metadata.
 */
export async function requestLogEntry(ledger: Ledger, accountId: string, requestId: string, endedAt: string): Promise<RequestLogEntry | undefined> {
  const { events } = await ledger.store.readStream(requestLogStreamId(accountId, new Date(endedAt).toISOString().slice(0, 10)));
  for (const { event } of events) if (event.type === 'RequestLogged' && event.data.requestId === requestId) return event.data;
  return undefined;
}

/** The account's state folded from its stored events. */
export async function accountState(ledger: Ledger, accountId: string): Promise<AccountState> {
  return (await accountEvents(ledger, accountId)).reduce(evolveAccount, initialAccountState());
}

/** The events of the account after the setup ones (open, top-ups): what requests wrote. */
export function requestEvents(events: readonly AccountEvent[]): AccountEvent[] {
  return events.filter((e) => e.type !== 'AccountOpened' && e.type !== 'TopUpCompleted');
}

export type EventOfType<T extends AccountEvent['type']> = Extract<AccountEvent, { type: T }>;

export function eventsOfType<T extends AccountEvent['type']>(events: readonly AccountEvent[], type: T): EventOfType<T>[] {
  return events.filter((e): e is EventOfType<T> => e.type === type);
}

export function openAiClient(gatewayUrl: string, apiKey: string, options: { maxRetries?: number } = {}): OpenAI {
  return new OpenAI({ baseURL: `${gatewayUrl}/v1`, apiKey, maxRetries: options.maxRetries ?? 0 });
}

/** Awaits a promise expected to reject and returns what it rejected with. */
export async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the call to fail, but it succeeded');
}

/** Every row of every table in the public schema, as text (for content-retention searches). */
export async function dumpDatabase(databaseUrl: string): Promise<{ tables: string[]; rows: string[] }> {
  const client = new Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows: tables } = await client.query<{ table_schema: string; table_name: string }>(
      `SELECT table_schema, table_name FROM information_schema.tables
        WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')`,
    );
    const rows: string[] = [];
    for (const { table_schema, table_name } of tables) {
      const quoted = `${quoteIdent(table_schema)}.${quoteIdent(table_name)}`;
      const result = await client.query<{ row: string }>(`SELECT t::text AS row FROM ${quoted} t`);
      for (const r of result.rows) rows.push(`${table_name}: ${r.row}`);
    }
    return { tables: tables.map((t) => `${t.table_schema}.${t.table_name}`), rows };
  } finally {
    await client.end();
  }
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export type { MicroUsd };

function ok(result: { ok: boolean; error?: unknown }, what: string): void {
  if (!result.ok) throw new Error(`${what} refused: ${JSON.stringify(result.error, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))}`);
}

/**
 * A request that cost exactly `costUsd`, reserved and settled straight through the ledger
 * (input tokens at USD 1 per million, price version 1), as if the gateway had served it.
 */
export async function spend(ledger: Ledger, accountId: string, costUsd: string, model = 'm'): Promise<void> {
  const stream = accountStreamId(accountId);
  const requestId = `req_${randomBytes(6).toString('hex')}`;
  ok(
    await ledger.accounts.handle(stream, {
      type: 'PlaceReservation',
      data: { requestId, keyId: 'k', model, operation: 'chat', amount: usd(costUsd), priceVersion: 1 },
      metadata: systemMetadata('test'),
    }),
    `PlaceReservation ${requestId}`,
  );
  ok(
    await ledger.accounts.handle(stream, {
      type: 'SettleReservation',
      data: {
        requestId,
        usage: { inputTokens: usd(costUsd), outputTokens: 0n, estimated: false },
        price: { inputPerMillion: 1_000_000n, outputPerMillion: 0n, version: 1 },
        outcome: 'completed',
      },
      metadata: systemMetadata('test'),
    }),
    `SettleReservation ${requestId}`,
  );
}
