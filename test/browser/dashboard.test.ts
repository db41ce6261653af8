import { readFileSync } from 'node:fs';
import OpenAI from 'openai';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { startStripeTestServer, type StripeTestServer } from '../support/stripe-stand-in';
import { formatUsd, requestCost, usd } from '../../domain/money';
import { apiClient } from '../integration/admin/http';
import { launchChromium, SCREENSHOT_DIR, screenshot, settled, signOut } from '../support/browser';
import { addModel, openAiClient } from '../support/e2e-setup';
import { lastRetentionRun } from '../../src/compliance/retention-schedule';
import { until } from '../support/wait';
import { startTestGateway, TEST_ADMIN_KEY, type TestGateway } from '../support/gateway';
import { defaultMockLlmConfig, mockChatUsage, startMockLlm, type MockLlm } from '../support/mock-llm';

/**
 * The dashboard in headless Chromium against a real gateway, a real upstream process
 * (mock-llm) and the local Stripe stand-in: what a customer and an admin see and do, asserted on
 * the visible text, with exact amounts. The tests run in order and share one account.
 */

const WEBHOOK_SECRET = 'whsec_test_tollgate_dashboard_0123456789';
// Odd prices, so an exact balance shows the rounding up to the next micro-USD.
const chatPrice = { input: '3.333333', output: '15.000001' };
const chatCost = requestCost(
  { inputTokens: BigInt(mockChatUsage.prompt_tokens), outputTokens: BigInt(mockChatUsage.completion_tokens) },
  { inputPerMillion: usd(chatPrice.input), outputPerMillion: usd(chatPrice.output) },
);

let stripe: StripeTestServer;
let upstream: MockLlm;
let tg: TestGateway;
let browser: Browser;
let customer: BrowserContext;
let customerPage: Page;
let accountId: string;
let customerKey: string;
const call = () => apiClient(tg.url);

beforeAll(async () => {
  [stripe, upstream, browser] = await Promise.all([startStripeTestServer(), startMockLlm(defaultMockLlmConfig()), launchChromium()]);
  tg = await startTestGateway({
    models: [{ id: 'browser-chat', upstreams: [{ baseUrl: upstream.baseUrl, capacity: 4 }], maxOutputTokens: 64, operations: ['chat'] }],
    env: {
      STRIPE_SECRET_KEY: 'sk_test_tollgate_dashboard',
      STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
      STRIPE_API_BASE: stripe.apiBase,
      STRIPE_AUTOMATIC_TAX: 'false',
    },
  });
  stripe.deliverWebhooksTo({ url: `${tg.url}/webhooks/stripe`, secret: WEBHOOK_SECRET });
  await addModel(tg.gateway.ledger, 'browser-chat', { chat: chatPrice }, 64);
  // The account is opened, credited and given a key through the admin API, as an operator would.
  const opened = await call()('POST', '/admin/accounts', TEST_ADMIN_KEY, { display_name: 'Ada Lovelace', email: 'ada@example.org' });
  accountId = opened.body.account_id;
  expect(
    (await call()('POST', `/admin/accounts/${accountId}/top-ups`, TEST_ADMIN_KEY, { amount_usd: '10.00', reference: 'invoice-1', reason: 'bank transfer' }))
      .status,
  ).toBe(201);
  const key = await call()('POST', `/admin/accounts/${accountId}/keys`, TEST_ADMIN_KEY, { name: 'main' });
  customerKey = key.body.key;
  customer = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  customerPage = await customer.newPage();
  watch(customerPage);
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await tg?.stop();
  await Promise.all([upstream?.stop(), stripe?.stop()]);
  process.stdout.write(`dashboard screenshots: ${SCREENSHOT_DIR}\n`);
});

/** A page's script errors fail the test that caused them, with their message. */
const pageErrors: string[] = [];
function watch(page: Page): void {
  // Short enough to fail fast, long enough for a machine busy with the rest of the suite.
  page.setDefaultTimeout(10_000);
  page.on('pageerror', (error) => pageErrors.push(error.message));
  page.on('response', (response) => {
    if (response.status() >= 400) pageErrors.push(`HTTP ${response.status()} ${response.request().method()} ${new URL(response.url()).pathname}`);
  });
}

afterEach(() => {
  const errors = pageErrors.splice(0);
  expect(errors).toEqual([]);
});

async function signIn(page: Page, key: string): Promise<void> {
  await page.goto(`${tg.url}/dashboard/#/key-sign-in`);
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
}

async function show(page: Page, hash: string): Promise<void> {
  await page.goto(`${tg.url}/dashboard/#/${hash}`);
  await page.reload();
}

test('the public pricing page lists the prices in force, without signing in', async () => {
  const page = await browser.newPage();
  watch(page);
  await page.goto(`${tg.url}/dashboard/pricing`);
  const row = page.getByRole('row', { name: /browser-chat/ });
  await expect(row.textContent()).resolves.toMatch(/chat\s*\$3\.333333\s*\$15\.000001/);
  await screenshot(page, 'pricing');
  await page.close();
});

test('a customer signs in with a key, held only in an HttpOnly SameSite=Strict session cookie, and sees the balance fall by exactly the cost of a request', async () => {
  await customerPage.goto(`${tg.url}/dashboard/#/key-sign-in`);
  await customerPage.getByLabel('API key').waitFor();
  await screenshot(customerPage, 'sign-in');
  await signIn(customerPage, customerKey);
  await expect(customerPage.locator('#available').textContent()).resolves.toBe('$10.00');

  const cookies = await customer.cookies();
  expect(cookies).toHaveLength(1);
  expect(cookies[0]).toMatchObject({ name: 'tollgate_session', httpOnly: true, sameSite: 'Strict', secure: false });
  expect(cookies[0]!.value).not.toContain(customerKey);
  const stored = await customerPage.evaluate<string>('JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie');
  expect(stored).not.toContain(customerKey.slice(-12));

  const answer = await openAiClient(tg.url, customerKey).chat.completions.create({
    model: 'browser-chat',
    messages: [{ role: 'user', content: 'hello from the dashboard test' }],
  });
  expect(answer.usage).toMatchObject(mockChatUsage);
  expect(chatCost).toBe(142n);

  await customerPage.reload();
  await expect(customerPage.locator('#available').textContent()).resolves.toBe(`$${formatUsd(usd('10') - chatCost)}`);
  await expect(customerPage.locator('#available').textContent()).resolves.toBe('$9.999858');
  await screenshot(customerPage, 'balance');
});

test('usage: charts per day and model, a table per key, and the statement as CSV', async () => {
  await show(customerPage, 'usage');
  const mainKey = customerPage.locator('#usage-by-key').getByRole('row', { name: /main/ });
  await expect(mainKey.textContent()).resolves.toMatch(/main.*1\s*0\s*11\s*7\s*\$0\.000142/);
  await expect(customerPage.locator('#usage-total').textContent()).resolves.toBe('$0.000142');
  // The charts are drawn after the tables (in an effect): wait for the second one.
  await customerPage.locator('.uplot canvas').nth(1).waitFor();
  expect(await customerPage.locator('.uplot canvas').count()).toBe(2);
  await customerPage.getByRole('button', { name: 'Last 90 days' }).click();
  await customerPage.getByRole('button', { name: 'Last 90 days', pressed: true }).waitFor();
  await expect(customerPage.locator('#usage-total').textContent()).resolves.toBe('$0.000142');
  await screenshot(customerPage, 'usage');

  const [download] = await Promise.all([customerPage.waitForEvent('download'), customerPage.getByRole('button', { name: 'Download statement (CSV)' }).click()]);
  const csv = readFileSync((await download.path())!, 'utf8');
  expect(csv.split('\n')[0]).toMatch(/occurred_at/);
  expect(csv).toContain('TopUpCompleted');
  expect(csv).toContain('ReservationSettled');
  expect(csv).toContain('-0.000142');
});

test('keys: a new key is shown once and works; renamed, then revoked, it gets 401 from the openai client', async () => {
  await show(customerPage, 'keys');
  await customerPage.getByLabel('Name of the new key').fill('ci-runner');
  await customerPage.getByRole('button', { name: 'Create key' }).click();
  const secret = await customerPage.locator('#new-key-secret').inputValue();
  expect(secret).toMatch(/^tg_/);
  await expect(customerPage.getByText('it is shown only once').count()).resolves.toBe(1);
  await customer.grantPermissions(['clipboard-read', 'clipboard-write']);
  await customerPage.getByRole('button', { name: 'Copy', exact: true }).click();
  await customerPage.getByText('Copied.').waitFor();
  await screenshot(customerPage, 'keys');

  const models = await openAiClient(tg.url, secret).models.list();
  expect(models.data.map((m) => m.id)).toEqual(['browser-chat']);

  await customerPage.getByRole('button', { name: 'I have stored it' }).click();
  await customerPage.getByRole('button', { name: 'Rename key ci-runner' }).click();
  await customerPage.getByLabel('New name for ci-runner').fill('ci-build');
  await customerPage.getByRole('button', { name: 'Save' }).click();
  await customerPage.getByText(/is now named ci-build\./).waitFor();
  await customerPage.getByRole('button', { name: 'Revoke key ci-build' }).click();
  await customerPage.getByRole('button', { name: 'Yes, revoke' }).click();
  await customerPage.getByText('Key ci-build').waitFor();
  await customerPage
    .getByRole('row', { name: /ci-build/ })
    .filter({ hasText: 'revoked' })
    .waitFor();
  await expect(customerPage.locator('#new-key-secret').count()).resolves.toBe(0);

  const refused = await openAiClient(tg.url, secret)
    .models.list()
    .then(
      () => null,
      (error: unknown) => error,
    );
  expect(refused).toBeInstanceOf(OpenAI.AuthenticationError);
  expect((refused as InstanceType<typeof OpenAI.AuthenticationError>).status).toBe(401);
});

test('billing: a top-up through the Stripe checkout (local stand-in) credits the account; auto top-up is set and turned off', async () => {
  await show(customerPage, 'billing');
  await customerPage.getByLabel('Amount (USD, before tax)').fill('25.00');
  await customerPage.getByRole('button', { name: 'Top up with a card' }).click();
  await customerPage.waitForURL(`${stripe.apiBase}/checkout/pay/**`);
  await expect(customerPage.locator('#amount').textContent()).resolves.toBe('USD 25.00');
  await screenshot(customerPage, 'stripe-checkout');
  await customerPage.getByRole('button', { name: 'Pay USD 25.00' }).click();
  await customerPage.waitForURL(`${tg.url}/dashboard/#/billing?top_up=success`);
  const payment = customerPage.locator('#payments-table').getByRole('row', { name: /Top-up.*pi_/ });
  await expect(payment.textContent()).resolves.toMatch(/\$25\.00\s*\$34\.999858/);

  // Auto top-up: on with a threshold and an amount, then off, through the customer API.
  await customerPage.getByLabel('When available falls below (USD)').fill('5.00');
  await customerPage.getByLabel('Charge the card (USD)').fill('20.00');
  await customerPage.getByRole('button', { name: 'Save' }).click();
  await customerPage
    .locator('#auto-top-up-status', { hasText: 'On: when the available balance falls below $5.00, your saved card is charged $20.00.' })
    .waitFor();
  await screenshot(customerPage, 'billing');
  await customerPage.getByRole('button', { name: 'Turn off' }).click();
  await customerPage.locator('#auto-top-up-status', { hasText: /^Off\.$/ }).waitFor();

  await show(customerPage, 'balance');
  await expect(customerPage.locator('#available').textContent()).resolves.toBe('$34.999858');
  await expect(customerPage.locator('#purchased').textContent()).resolves.toBe('$34.999858');
});

test('billing: the top-up invoice is listed and its PDF downloads; a VAT ID is saved and verified for the reverse charge', async () => {
  await show(customerPage, 'billing');
  const row = customerPage.locator('#invoices-table').getByRole('row', { name: /Invoice TGTEST-/ });
  await expect(row.textContent()).resolves.toMatch(/\$25\.00/);
  const [download] = await Promise.all([customerPage.waitForEvent('download'), row.getByRole('link', { name: 'PDF' }).click()]);
  const saved = await download.path();
  const pdf = readFileSync(saved).toString('latin1');
  expect(pdf.startsWith('%PDF-')).toBe(true);
  expect(pdf).toContain('total USD 25.00');

  await customerPage.getByLabel('EU VAT ID').fill('DE 123456789');
  await customerPage.getByRole('button', { name: 'Set VAT ID' }).click();
  await customerPage.locator('#vat-status', { hasText: 'DE123456789 (verified: reverse charge, no VAT added)' }).waitFor();
  await screenshot(customerPage, 'billing-invoices');
});

describe('admin', () => {
  let admin: BrowserContext;
  let page: Page;

  beforeAll(async () => {
    admin = await browser.newContext({ viewport: { width: 1200, height: 900 } });
    page = await admin.newPage();
    watch(page);
    // Keyboard only: Tab to the key, type it, Enter; then to a page through the navigation.
    await page.goto(`${tg.url}/dashboard/#/key-sign-in`);
    await page.getByLabel('API key').waitFor();
    await page.keyboard.press('Tab');
    await expect(page.evaluate<string>('document.activeElement.id')).resolves.toBe('sign-in-key');
    await page.keyboard.type(TEST_ADMIN_KEY);
    await page.keyboard.press('Enter');
    await page.getByRole('button', { name: 'Sign out' }).waitFor();
    await page.getByRole('link', { name: 'Audit log' }).focus();
    await page.keyboard.press('Shift+Tab');
    await page.keyboard.press('Enter');
    await page.waitForURL('**/#/models');
    // Focus moves to the new page's heading once it has rendered.
    await page.locator('h1:focus').waitFor();
    await expect(page.evaluate<string>('document.activeElement.outerHTML')).resolves.toMatch(/^<h1[^>]*>Models and prices<\/h1>$/);
    await show(page, 'accounts');
  });

  afterAll(() => admin?.close());

  test('an admin finds the account, suspends it with a reason, and the customer sees why and what to do', async () => {
    await page.getByLabel('Search accounts').fill('lovelace');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByRole('link', { name: accountId }).click();
    await expect(page.locator('#account-status').textContent()).resolves.toBe('open');
    await page.getByLabel('Suspension reason').selectOption('terms_violation');
    await page.getByRole('button', { name: 'Suspend' }).click();
    await page.getByText('The account is suspended.').waitFor();
    await page.locator('#account-status', { hasText: /^suspended$/ }).waitFor();
    await screenshot(page, 'admin-accounts');

    await show(customerPage, 'balance');
    const banner = customerPage.locator('#account-banner');
    await expect(banner.textContent()).resolves.toMatch(/Your account is suspended \(terms violation\)\..*breach of the terms of service.*Contact support/);
    await screenshot(customerPage, 'balance-suspended');
    const refused = await openAiClient(tg.url, customerKey)
      .chat.completions.create({ model: 'browser-chat', messages: [{ role: 'user', content: 'still there?' }] })
      .then(
        () => null,
        (error: unknown) => error,
      );
    expect(refused).toBeInstanceOf(OpenAI.PermissionDeniedError);

    await page.getByRole('button', { name: 'Reinstate (admin decision)' }).click();
    await page.getByText('The account is reinstated.').waitFor();
    await show(customerPage, 'balance');
    await customerPage.locator('#available').waitFor();
    // Absence is only meaningful once the banner's own request has been answered.
    await customerPage.waitForLoadState('networkidle');
    await expect(customerPage.locator('#account-banner').count()).resolves.toBe(0);
  });

  test('an admin grants promo credit with an expiry and the customer sees it', async () => {
    await page.getByLabel('Promo amount (USD)').fill('5.50');
    await page.getByLabel('Expires (UTC)').fill('2099-01-31T12:00');
    await page.getByLabel('Promo reason').fill('conference voucher');
    await page.getByRole('button', { name: 'Grant' }).click();
    await page.getByText('Granted $5.50 of promotional credit.').waitFor();
    await show(customerPage, 'balance');
    await expect(customerPage.locator('#promo').textContent()).resolves.toBe('$5.50');
    await expect(customerPage.getByRole('row', { name: /\$5\.50/ }).textContent()).resolves.toContain('2099-01-31 12:00 UTC');
  });

  test('an admin refunds part of the card payment through Stripe, and the customer sees it', async () => {
    await page.getByLabel('Refund amount (USD)').fill('10.00');
    await page.getByLabel('Refund reason').fill('unused credit');
    await page.getByRole('button', { name: 'Refund', exact: true }).click();
    await page.getByText(/Refund .*: \$10\.00 refunded\./).waitFor();
    expect([...stripe.refunds.values()].map((r) => r['amount'])).toEqual([1000]);
    await show(customerPage, 'billing');
    const refund = customerPage.locator('#payments-table').getByRole('row', { name: /Refund/ });
    await expect(refund.textContent()).resolves.toMatch(/-\$10\.00\s*\$30\.499858/);
    await show(customerPage, 'balance');
    await expect(customerPage.locator('#purchased').textContent()).resolves.toBe('$24.999858');
  });

  test('models and prices: add a model, schedule a price change, retire it', async () => {
    await show(page, 'models');
    await page.getByLabel('Model id').fill('browser-next');
    await page.getByRole('button', { name: 'Add model' }).click();
    await page.getByText('Model browser-next added.').waitFor();
    await page.getByLabel('Model', { exact: true }).selectOption('browser-next');
    await page.getByLabel('Input, USD per million').fill('0.20');
    await page.getByLabel('Output, USD per million').fill('0.60');
    await page.getByLabel('Effective from (UTC)').fill('2099-06-01T00:00');
    await page.getByRole('button', { name: 'Save price' }).click();
    await page.getByText(/takes effect 2099-06-01 00:00 UTC/).waitFor();
    // The table reloads after the change: wait for the new row rather than read the old one.
    await page
      .getByRole('row', { name: /browser-next/ })
      .filter({ hasText: /chat: \$0\.20 \/ \$0\.60 \(from 2099-06-01 00:00 UTC\)/ })
      .waitFor();
    await screenshot(page, 'admin-models');
    await page.getByRole('button', { name: 'Retire model browser-next' }).click();
    await page.getByRole('button', { name: 'Yes, retire' }).click();
    await page.getByText('Model browser-next is retired.').waitFor();
    await page
      .getByRole('row', { name: /browser-next/ })
      .filter({ hasText: 'browser-next (retired)' })
      .waitFor();
  });

  test('audit log: filtered by action and target, with the hash chain verified', async () => {
    await show(page, 'audit');
    await page.getByLabel('Action').fill('account.suspended');
    await page.getByLabel('Target').fill(`account:${accountId}`);
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.getByText('1 entry.').waitFor();
    await expect(page.locator('#audit-table tbody').textContent()).resolves.toMatch(/admin:admin.*account\.suspended.*terms_violation/);
    await expect(page.locator('#chain-status').textContent()).resolves.toMatch(/^Hash chain verified/);
    await screenshot(page, 'admin-audit');
  });

  test('retention: what goes when (the request log and audit entries 90 days on; wallet never) and the last run, counts only', async () => {
    const last = await until(async () => (await lastRetentionRun(tg.gateway.ledger)) ?? undefined, { what: 'the start-up retention run' });
    await show(page, 'retention');
    await settled(page);
    const today = new Date().toISOString().slice(0, 10);
    const ninetyDaysOn = new Date(Date.now() + 90 * 86_400_000).toISOString().slice(0, 10);
    const requestLog = page.locator('#retention-table').getByRole('row', { name: new RegExp(`request log ${today}`) });
    await expect(requestLog.textContent()).resolves.toMatch(new RegExp(`^Request log.*${ninetyDaysOn} \\d\\d:\\d\\d UTC.*deleted$`));
    const auditLog = page.locator('#retention-table').getByRole('row', { name: new RegExp(`audit log ${today}`) });
    await expect(auditLog.textContent()).resolves.toMatch(new RegExp(`^Audit log.*${ninetyDaysOn} \\d\\d:\\d\\d UTC.*deleted$`));
    await expect(
      page
        .locator('#retention-table')
        .getByRole('row', { name: /Wallet transactions/ })
        .textContent(),
    ).resolves.toMatch(/never\s*kept$/);
    await expect(page.locator('#last-run').textContent()).resolves.toMatch(
      new RegExp(`Run ${last.runId} as of .*: ${last.requestMetadataPurged} request-log\\s+entries and ${last.auditEntriesPurged} audit entries deleted`),
    );
    await screenshot(page, 'admin-retention');
  });
});

test('every page passes axe-core’s WCAG 2 A and AA rules (labels, names, contrast)', async () => {
  // CSP is bypassed in this context only, so that axe's script can be injected into the pages.
  const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1200, height: 900 } });
  const axe = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
  const check = async (page: Page, name: string) => {
    await page.addScriptTag({ content: axe });
    const result = await page.evaluate<{ violations: { id: string; help: string; nodes: { target: string[] }[] }[] }>(
      `axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } })`,
    );
    expect({ page: name, violations: result.violations.map((v) => `${v.id}: ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`) }).toEqual({
      page: name,
      violations: [],
    });
  };
  const page = await context.newPage();
  watch(page);
  await page.goto(`${tg.url}/dashboard/pricing`);
  await check(page, 'pricing');
  await page.goto(`${tg.url}/status`);
  await check(page, 'status-page');
  await page.goto(`${tg.url}/dashboard/#/key-sign-in`);
  await page.getByLabel('API key').waitFor();
  await check(page, 'sign-in');
  await signIn(page, customerKey);
  for (const hash of ['balance', 'usage', 'keys', 'billing', 'notices']) {
    await show(page, hash);
    await settled(page);
    await check(page, hash);
  }
  await signOut(page);
  await signIn(page, TEST_ADMIN_KEY);
  for (const hash of [`accounts?id=${accountId}`, 'models', 'audit', 'retention', 'status']) {
    await show(page, hash);
    await settled(page);
    await check(page, hash);
  }
  await context.close();
  // A safety net, not a verdict: twelve pages, each checked by axe, on a machine shared with the suite.
}, 180_000);
