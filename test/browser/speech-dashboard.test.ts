import { createReadStream, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { PRICE_BOOK_STREAM_ID, type Operation } from '../../domain/price-book';
import { systemMetadata } from '../../src/command-metadata';
import { apiClient } from '../integration/admin/http';
import { launchChromium, screenshot, settled, signOut } from '../support/browser';
import { openAiClient } from '../support/e2e-setup';
import { startTestGateway, TEST_ADMIN_KEY, type TestGateway } from '../support/gateway';
import { espeakWav, startSpeechServer, wavDurationSeconds, type SpeechServer } from '../support/speech-server';
import { until } from '../support/wait';

/**
 * The dashboard in audio units, in headless Chromium against a real gateway and the speech
 * server: the usage page charts and tabulates audio seconds and input characters, and an operator
 * sets a per-second price on the models page.
 */

let server: SpeechServer;
let tg: TestGateway;
let browser: Browser;
let page: Page;
const errors: string[] = [];
const input = 'Characters are what speech costs.';
let audioMs: bigint;

beforeAll(async () => {
  [server, browser] = await Promise.all([startSpeechServer(), launchChromium()]);
  tg = await startTestGateway({
    models: [
      { id: 'whisper', upstreams: [{ baseUrl: server.baseUrl, capacity: 4 }], maxOutputTokens: 64, operations: ['transcription', 'translation'] },
      { id: 'tts', upstreams: [{ baseUrl: server.baseUrl, capacity: 4 }], maxOutputTokens: 1, operations: ['speech'] },
    ],
  });
  const ledger = tg.gateway.ledger;
  const add = async (modelId: string, operations: Operation[], price: Record<string, bigint>) => {
    await ledger.priceBook.handle(PRICE_BOOK_STREAM_ID, {
      type: 'AddModel',
      data: { modelId, operations, maxOutputTokens: 64n },
      metadata: systemMetadata('test'),
    });
    const set = await ledger.priceBook.handle(PRICE_BOOK_STREAM_ID, {
      type: 'SetPrice',
      data: { modelId, operation: operations[0]!, inputPerMillion: 0n, outputPerMillion: 0n, ...price },
      metadata: systemMetadata('test'),
    });
    expect(set.ok).toBe(true);
  };
  await add('whisper', ['transcription', 'translation'], { perAudioSecond: 100n });
  await add('tts', ['speech'], { perMillionCharacters: 15_000_000n });

  const call = apiClient(tg.url);
  const opened = await call('POST', '/admin/accounts', TEST_ADMIN_KEY, { display_name: 'Ada Lovelace', email: 'ada@example.org' });
  const accountId = opened.body.account_id as string;
  await call('POST', `/admin/accounts/${accountId}/top-ups`, TEST_ADMIN_KEY, { amount_usd: '10.00', reference: 'invoice-1', reason: 'bank transfer' });
  const key = (await call('POST', `/admin/accounts/${accountId}/keys`, TEST_ADMIN_KEY, { name: 'main' })).body.key as string;

  const wav = espeakWav('the dashboard counts seconds');
  const { numerator, byteRate } = wavDurationSeconds(wav);
  audioMs = (BigInt(numerator) * 1_000n + BigInt(byteRate) - 1n) / BigInt(byteRate);
  const file = join(mkdtempSync(join(tmpdir(), 'tollgate-speech-ui-')), 'clip.wav');
  writeFileSync(file, wav);
  const client = openAiClient(tg.url, key);
  await client.audio.transcriptions.create({ file: createReadStream(file), model: 'whisper', response_format: 'text' });
  await (await client.audio.speech.create({ model: 'tts', voice: 'alloy', input })).arrayBuffer();
  await until(async () => ((await call('GET', '/v1/usage', key)).body.data.length === 2 ? true : undefined), { what: 'both requests in usage' });

  page = await (await browser.newContext({ viewport: { width: 1200, height: 900 } })).newPage();
  page.setDefaultTimeout(10_000);
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(`${tg.url}/dashboard/#/key-sign-in`);
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await tg?.stop();
  await server?.stop();
});

afterEach(() => expect(errors.splice(0)).toEqual([]));

test('the usage page shows audio seconds and input characters, with a chart for each', async () => {
  await page.goto(`${tg.url}/dashboard/#/usage`);
  await page.reload();
  const seconds = `${audioMs / 1_000n}.${(audioMs % 1_000n).toString().padStart(3, '0')}`;
  await settled(page);
  const whisper = page.locator('#usage-by-model').getByRole('row', { name: /whisper \(transcription\)/ });
  await whisper.waitFor();
  // Requests, errors, input and output tokens, audio seconds, characters, cost (100 micro-USD a second, rounded up once).
  const cost = (audioMs * 100n + 999n) / 1_000n;
  const shown = `$0.${cost.toString().padStart(6, '0').replace(/0+$/, '')}`;
  expect(await whisper.locator('td').allTextContents()).toEqual(['1', '0', '0', '0', seconds, '0', shown]);
  const tts = page.locator('#usage-by-model').getByRole('row', { name: /tts \(speech\)/ });
  expect(await tts.locator('td').allTextContents()).toEqual(['1', '0', '0', '0', '0.000', String(input.length), '$0.000495']);
  expect(input.length * 15).toBe(495);
  await page.locator('.uplot canvas').nth(3).waitFor();
  expect(await page.locator('.uplot canvas').count()).toBe(4);
  await expect(page.getByText('Audio seconds per day (transcription, translation), by model').count()).resolves.toBe(1);
  await expect(page.getByText('Input characters per day (speech), by model').count()).resolves.toBe(1);
  await screenshot(page, 'usage-speech');
});

test('an operator sets a per-second price on the models page', async () => {
  await signOut(page);
  // Signed out, the dashboard offers a person's sign-in; operators' keys sign in on their own page.
  await page.goto(`${tg.url}/dashboard/#/key-sign-in`);
  await page.getByLabel('API key').fill(TEST_ADMIN_KEY);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
  await page.goto(`${tg.url}/dashboard/#/models`);
  await page.reload();
  await page.getByLabel('Model', { exact: true }).selectOption('whisper');
  await page.getByLabel('Operation').selectOption('translation');
  await page.getByLabel('Input, USD per million').fill('0');
  await page.getByLabel('Output, USD per million').fill('0');
  await page.getByLabel('USD per audio second').fill('0.0002');
  await page.getByRole('button', { name: 'Save price' }).click();
  await page.getByText(/Price version \d+ for whisper \(translation\)/).waitFor();
  const row = page.locator('#models-table').getByRole('row', { name: /whisper/ });
  await expect(row.textContent()).resolves.toContain('translation: $0.00 / $0.00, $0.0002 per audio second');
});
