import { readFileSync } from 'node:fs';
import OpenAI from 'openai';
import type { Browser, Page } from 'playwright-core';
import { apiClient } from '../integration/admin/http';
import { launchChromium, screenshot } from '../support/browser';
import { addModel, openAiClient, rejectionOf } from '../support/e2e-setup';
import { startTestGateway, TEST_ADMIN_KEY, type TestGateway } from '../support/gateway';
import { defaultMockLlmConfig, startMockLlm, type MockLlm } from '../support/mock-llm';

/**
 * Key limits in the dashboard, in headless Chromium against a real gateway and upstream: a
 * customer sets a key's spend limit, expiry and model allowlist on the keys page, sees them
 * listed with the spend of the window, and the key is refused as the limits say; bad input
 * shows the gateway's message and changes nothing.
 */

let upstream: MockLlm;
let tg: TestGateway;
let browser: Browser;
let page: Page;
let workerSecret: string;
let accountId: string;
let manager: string;
const pageErrors: string[] = [];

beforeAll(async () => {
  [upstream, browser] = await Promise.all([startMockLlm(defaultMockLlmConfig()), launchChromium()]);
  tg = await startTestGateway({
    models: ['browser-chat', 'other-chat'].map((id) => ({
      id,
      upstreams: [{ baseUrl: upstream.baseUrl, capacity: 4 }],
      maxOutputTokens: 64,
      operations: ['chat' as const],
    })),
  });
  await addModel(tg.gateway.ledger, 'browser-chat', { chat: { input: '1', output: '2' } }, 64);
  await addModel(tg.gateway.ledger, 'other-chat', { chat: { input: '1', output: '2' } }, 64);
  const call = apiClient(tg.url);
  const opened = await call('POST', '/admin/accounts', TEST_ADMIN_KEY, { display_name: 'Grace Hopper', email: 'grace@example.org' });
  accountId = opened.body.account_id;
  expect((await call('POST', `/admin/accounts/${accountId}/top-ups`, TEST_ADMIN_KEY, { amount_usd: '10.00', reference: 'inv-1', reason: 'bank' })).status).toBe(
    201,
  );
  manager = (await call('POST', `/admin/accounts/${accountId}/keys`, TEST_ADMIN_KEY, { name: 'main' })).body.key;
  workerSecret = (await call('POST', '/v1/account/keys', manager, { name: 'worker', scopes: ['inference'] })).body.key;
  const context = await browser.newContext({ viewport: { width: 1300, height: 900 } });
  page = await context.newPage();
  page.setDefaultTimeout(10_000);
  page.on('pageerror', (error) => pageErrors.push(error.message));
  await page.goto(`${tg.url}/dashboard/#/key-sign-in`);
  await page.getByLabel('API key').fill(manager);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
  await page.goto(`${tg.url}/dashboard/#/keys`);
  await page.reload();
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await tg?.stop();
  await upstream?.stop();
});

afterEach(() => expect(pageErrors).toEqual([]));

const workerRow = () => page.getByRole('row', { name: /worker/ });

test('bad input shows the gateway’s message and changes nothing', async () => {
  await page.getByRole('button', { name: 'Limits of key worker' }).click();
  await page.getByLabel('Spend limit').selectOption('day');
  await page.getByLabel('Limit (USD, whole cents)').fill('2.005');
  await page.getByRole('button', { name: 'Save limits' }).click();
  await page.getByRole('alert').filter({ hasText: 'must be whole cents' }).waitFor();
  await page.getByLabel('Limit (USD, whole cents)').fill('2.00');
  await page.getByLabel('Allowed models').fill('browser-chat, no-such-model');
  await page.getByRole('button', { name: 'Save limits' }).click();
  await page.getByRole('alert').filter({ hasText: 'no such model in the price book' }).waitFor();
  await expect(workerRow().locator('td.limits').textContent()).resolves.toBe('none');
  // The key is still unlimited.
  expect(
    (await openAiClient(tg.url, workerSecret).chat.completions.create({ model: 'other-chat', messages: [{ role: 'user', content: 'hi' }] })).choices,
  ).toHaveLength(1);
});

test('a customer sets a spend limit, expiry and allowlist; the list shows them, and the key is refused as they say', async () => {
  await page.getByLabel('Limit (USD, whole cents)').fill('0.00');
  const expiry = new Date(Date.now() + 7 * 86_400_000).toISOString().slice(0, 16);
  await page.getByLabel('Expires at (UTC)').fill(expiry);
  await page.getByLabel('Allowed models').fill('browser-chat');
  await page.getByRole('button', { name: 'Save limits' }).click();
  await page.getByText(/The limits of key worker .* are saved/).waitFor();
  const limits = workerRow().locator('td.limits');
  await limits.getByText('USD 0.000000 a day (UTC)').waitFor();
  // the first test's request (before the limit) counts in today's window
  const spentBefore = /USD (0\.\d{6}) spent, USD 0\.000000 left \(resets \d{4}-\d{2}-\d{2} 00:00 UTC\)/.exec((await limits.textContent()) ?? '')?.[1];
  expect(Number(spentBefore)).toBeGreaterThan(0);
  await expect(limits.textContent()).resolves.toContain(`Expires ${expiry.replace('T', ' ')} UTC`);
  await expect(limits.textContent()).resolves.toContain('Models: browser-chat');
  await expect(workerRow().textContent()).resolves.toContain('key tg_');
  await screenshot(page, 'key-limits');

  const client = openAiClient(tg.url, workerSecret);
  const notAllowed = await rejectionOf(client.chat.completions.create({ model: 'other-chat', messages: [{ role: 'user', content: 'hi' }] }));
  expect(notAllowed).toBeInstanceOf(OpenAI.PermissionDeniedError);
  expect((notAllowed as InstanceType<typeof OpenAI.PermissionDeniedError>).code).toBe('model_not_allowed');
  const overLimit = await rejectionOf(client.chat.completions.create({ model: 'browser-chat', messages: [{ role: 'user', content: 'hi' }] }));
  expect(overLimit).toBeInstanceOf(OpenAI.RateLimitError);
  expect((overLimit as InstanceType<typeof OpenAI.RateLimitError>).code).toBe('key_spend_limit_reached');

  // Raised again from the page: the key spends, and the list shows what it spent.
  await page.getByRole('button', { name: 'Limits of key worker' }).click();
  await expect(page.getByLabel('Allowed models').inputValue()).resolves.toBe('browser-chat');
  await page.getByLabel('Limit (USD, whole cents)').fill('1.00');
  await page.getByRole('button', { name: 'Save limits' }).click();
  await page.getByText(/The limits of key worker .* are saved/).waitFor();
  expect((await client.chat.completions.create({ model: 'browser-chat', messages: [{ role: 'user', content: 'hi' }] })).choices).toHaveLength(1);
  await tg.gateway.settlements.settled(accountId);
  await page.reload();
  await workerRow()
    .locator('td.limits')
    .getByText(/USD 1\.000000 a day \(UTC\): USD 0\.0000\d\d spent/)
    .waitFor();
});

test('the keys page with the limits form open passes axe-core’s WCAG 2 A and AA rules', async () => {
  // CSP is bypassed in this context only, so that axe's script can be injected.
  const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1300, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${tg.url}/dashboard/#/key-sign-in`);
  await page.getByLabel('API key').fill(manager);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
  await page.goto(`${tg.url}/dashboard/#/keys`);
  await page.reload();
  await page.getByRole('button', { name: 'Limits of key worker' }).click();
  await page.locator('#key-limits-form').waitFor();
  await page.addScriptTag({ content: readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8') });
  const result = await page.evaluate<{ violations: { id: string; nodes: { target: string[] }[] }[] }>(
    `axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } })`,
  );
  await context.close();
  expect(result.violations.map((v) => `${v.id} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`)).toEqual([]);
}, 60_000);
