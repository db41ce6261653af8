import type { Browser, Page } from 'playwright-core';
import { apiClient } from '../integration/admin/http';
import { launchChromium, screenshot, settled } from '../support/browser';
import { startTestGateway, TEST_ADMIN_KEY, type TestGateway } from '../support/gateway';
import { defaultMockLlmConfig, startMockLlm, type MockLlm } from '../support/mock-llm';
import { until } from '../support/wait';

/**
 * Notices, the status page and the model catalogue in headless Chromium against a real gateway
 * and upstream: the banner until dismissed, the list and preferences, the public status page with
 * an incident, and the Model Rules on the pricing page.
 */

let upstream: MockLlm;
let tg: TestGateway;
let browser: Browser;
let customerKey: string;
let accountId: string;
const call = () => apiClient(tg.url);
const admin = (method: string, path: string, body?: unknown) => call()(method, path, TEST_ADMIN_KEY, body);

beforeAll(async () => {
  [upstream, browser] = await Promise.all([startMockLlm(defaultMockLlmConfig()), launchChromium()]);
  tg = await startTestGateway({
    models: [{ id: 'rules-chat', upstreams: [{ baseUrl: upstream.baseUrl, capacity: 4 }], maxOutputTokens: 64, operations: ['chat'] }],
    env: { TOLLGATE_PROBE_INTERVAL_S: '0.5' },
  });
  expect((await admin('POST', '/admin/models', { id: 'rules-chat', operations: ['chat'], max_output_tokens: 64 })).status).toBe(201);
  expect(
    (await admin('POST', '/admin/prices', { model: 'rules-chat', operation: 'chat', input_usd_per_million: '1', output_usd_per_million: '2' })).status,
  ).toBe(201);
  expect(
    (
      await admin('PUT', '/admin/models/rules-chat/catalogue', {
        description: 'A chat model for the browser test.',
        context_length: 131072,
        licence: 'Llama 3.1 Community Licence',
        rules_text: 'You may not use it to generate malware.',
        rules_url: 'https://example.org/llama/acceptable-use',
        status: 'deprecated',
        retires_at: '2099-01-01T00:00:00Z',
      })
    ).status,
  ).toBe(200);
  const opened = await admin('POST', '/admin/accounts', { display_name: 'Grace', email: 'grace@example.org' });
  accountId = opened.body.account_id;
  customerKey = (await admin('POST', `/admin/accounts/${accountId}/keys`, { name: 'main' })).body.key;
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await tg?.stop();
  await upstream?.stop();
});

const pageErrors: string[] = [];
function watch(page: Page): void {
  page.setDefaultTimeout(10_000);
  page.on('pageerror', (error) => pageErrors.push(error.message));
}
afterEach(() => expect(pageErrors.splice(0)).toEqual([]));

test('the pricing page shows each model with its licence and Model Rules', async () => {
  const page = await browser.newPage();
  watch(page);
  await page.goto(`${tg.url}/dashboard/pricing`);
  const section = page.getByRole('region', { name: 'rules-chat' });
  await expect(section.textContent()).resolves.toContain('You may not use it to generate malware.');
  await expect(section.textContent()).resolves.toContain('Llama 3.1 Community Licence');
  await expect(section.textContent()).resolves.toContain('131,072 tokens');
  await expect(section.textContent()).resolves.toContain('deprecated, retires on 2099-01-01 00:00 UTC');
  const link = section.getByRole('link', { name: 'Model Rules for rules-chat' });
  await expect(link.getAttribute('href')).resolves.toBe('https://example.org/llama/acceptable-use');
  await screenshot(page, 'pricing-model-rules');
  await page.close();
});

test('a notice shows as a banner until dismissed, and stays in the list; essential kinds cannot be turned off', async () => {
  const incident = await admin('POST', '/admin/notices', { kind: 'incident', subject: 'Slow answers on rules-chat', body: 'We are adding capacity.' });
  expect(incident.status).toBe(201);
  await until(async () => ((await call()('GET', '/v1/account/notices', customerKey)).body.data.length > 0 ? true : undefined), {
    what: 'the notice in the read model',
  });
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  watch(page);
  await page.goto(`${tg.url}/dashboard/#/key-sign-in`);
  await page.getByLabel('API key').fill(customerKey);
  await page.getByRole('button', { name: 'Sign in' }).click();
  const banner = page.getByRole('region', { name: 'Notices' });
  await banner.getByText('Slow answers on rules-chat').waitFor();
  await screenshot(page, 'notices-banner');
  await banner.getByRole('button', { name: 'Dismiss notice: Slow answers on rules-chat' }).click();
  await banner.waitFor({ state: 'detached' });

  await page.goto(`${tg.url}/dashboard/#/notices`);
  await page.reload();
  await page.locator('#notices-table').getByText('Slow answers on rules-chat').waitFor();
  await expect(page.locator('#notices-table').textContent()).resolves.toContain('yes');
  // Essential: disabled. Non-essential: can be turned off.
  await expect(page.getByLabel('Price increases on models you use (essential)').isDisabled()).resolves.toBe(true);
  await page.getByLabel('Incidents and their updates').click();
  await page.getByText('Incidents and their updates: off.').waitFor();
  await screenshot(page, 'notices-page');
  // A later incident does not come back as a banner for this account.
  await admin('POST', '/admin/notices', { kind: 'incident', subject: 'Another incident', body: 'x' });
  await until(async () => ((await call()('GET', '/v1/account/notices', customerKey)).body.data.length === 2 ? true : undefined), { what: 'the second notice' });
  await page.goto(`${tg.url}/dashboard/#/balance`);
  await page.reload();
  await settled(page);
  await expect(page.getByRole('region', { name: 'Notices' }).count()).resolves.toBe(0);
  await context.close();
});

test('the public status page shows the models, the uptime target and incidents with updates', async () => {
  const incidents = (await admin('GET', '/admin/status')).body.incidents as { id: string; subject: string }[];
  const first = incidents.find((i) => i.subject === 'Slow answers on rules-chat')!;
  expect((await admin('POST', `/admin/incidents/${first.id}/updates`, { body: 'Capacity added; answers are fast again.', resolved: true })).status).toBe(201);
  const page = await browser.newPage();
  watch(page);
  await until(
    async () => {
      const status = (await call()('GET', '/status.json', null)).body;
      return status.incidents.find((i: { id: string }) => i.id === first.id)?.resolved_at ? true : undefined;
    },
    { what: 'the resolution in the status' },
  );
  await page.goto(`${tg.url}/status`);
  await expect(page.locator('#overall').textContent()).resolves.toBe('All systems operational');
  await expect(page.getByRole('row', { name: /rules-chat/ }).textContent()).resolves.toMatch(/operational\s*100\.000%\s*100\.000%\s*met/);
  await expect(page.getByRole('table').locator('caption').textContent()).resolves.toContain('target 99.500% per month');
  const incident = page.getByRole('region', { name: 'Incident: Slow answers on rules-chat' });
  await expect(incident.textContent()).resolves.toContain('(resolved)');
  await expect(incident.textContent()).resolves.toContain('Capacity added; answers are fast again.');
  await screenshot(page, 'status');
  await page.close();
});
