import type { Browser } from 'playwright-core';
import { launchChromium, screenshot } from '../support/browser';
import { startTestGateway, type TestGateway } from '../support/gateway';

/**
 * The API reference page (/docs) in headless Chromium: Swagger UI, served from the gateway's own
 * node_modules under its CSP, renders the title and the operations of /openapi.json, with no
 * console error (a CSP violation is one), no failed request and no request to another origin.
 */

let tg: TestGateway;
let browser: Browser;

beforeAll(async () => {
  // No inference here: an upstream that is never called.
  [tg, browser] = await Promise.all([
    startTestGateway({
      models: [{ id: 'docs-model', upstreams: [{ baseUrl: 'http://127.0.0.1:9/v1', capacity: 1 }], maxOutputTokens: 16, operations: ['chat'] }],
    }),
    launchChromium(),
  ]);
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await tg?.stop();
});

test('/docs renders the title and the operations, from the gateway only, without console errors', async () => {
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  const problems: string[] = [];
  const origins = new Set<string>();
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('request', (request) => {
    const url = new URL(request.url());
    if (url.protocol === 'http:' || url.protocol === 'https:') origins.add(url.origin);
  });
  page.on('requestfailed', (request) => problems.push(`failed: ${request.url()}`));
  page.on('response', (response) => {
    if (response.status() >= 400) problems.push(`HTTP ${response.status()} ${response.url()}`);
  });

  await page.goto(`${tg.url}/docs`);
  await page.getByRole('heading', { name: /Tollgate API/ }).waitFor();
  // An operation of each kind: the OpenAI-compatible chat completions and an admin route.
  await page.locator('.opblock-summary-path', { hasText: '/v1/chat/completions' }).first().waitFor();
  await page.locator('.opblock-summary-path', { hasText: '/admin/accounts' }).first().waitFor();
  // Opening one shows its documented answers, among them the 429 for insufficient credit.
  await page.locator('.opblock-summary', { hasText: '/v1/chat/completions' }).first().click();
  await page.locator('.opblock-body .response-col_status', { hasText: '429' }).first().waitFor();
  await screenshot(page, 'api-docs');

  expect(problems).toEqual([]);
  expect([...origins]).toEqual([tg.url]);
  await context.close();
});
