import type { Browser, Page } from 'playwright-core';
import { accountStreamId } from '../../domain/account';
import { systemMetadata } from '../../src/command-metadata';
import { launchChromium, screenshot, signOut } from '../support/browser';
import { DashboardClient } from '../support/dashboard-client';
import { startTestGateway, type TestGateway } from '../support/gateway';
import { TestSmtpServer, linkTokenIn } from '../support/smtp';

/**
 * Claiming a refund after closure, in headless Chromium against a real gateway, SMTP and
 * PostgreSQL: the owner of a closed account signs in with their password, sees on the billing
 * page what can be claimed and until when, claims, and sees the claim in the payments history;
 * and the keys page of a closed account says it is closed and offers no form.
 */

const MODELS = [{ id: 'm', upstreams: [{ baseUrl: 'http://127.0.0.1:9/v1', capacity: 1 }], maxOutputTokens: 10, operations: ['chat' as const] }];
const PASSWORD = 'salt marsh herons at dusk';

let smtp: TestSmtpServer;
let browser: Browser;
let tg: TestGateway;

beforeAll(async () => {
  smtp = await new TestSmtpServer().start();
  browser = await launchChromium();
  tg = await startTestGateway({ models: MODELS, env: { SMTP_URL: smtp.url, TOLLGATE_MAIL_POLL_INTERVAL_S: '0.05', TOLLGATE_BCRYPT_COST: '4' } });
}, 90_000);

afterAll(async () => {
  await tg?.stop();
  await browser?.close();
  await smtp?.stop();
});

function watch(page: Page): void {
  page.on('pageerror', (error) => {
    throw error;
  });
}

test('claiming a refund after closure: the owner signs in to the closed account, sees the amount and deadline, claims, and sees it in the history', async () => {
  // The person signs up through the identity API and confirms the emailed link.
  const api = new DashboardClient(tg.url);
  expect((await api.post('/dashboard/api/sign-up', { email: 'grace@claim.test', name: 'Grace', password: PASSWORD, organisation: 'Compilers' })).status).toBe(
    202,
  );
  expect((await api.post('/dashboard/api/verify-email', { token: linkTokenIn(await smtp.waitFor('grace@claim.test')) })).status).toBe(200);
  expect((await api.post('/dashboard/api/sign-in', { email: 'grace@claim.test', password: PASSWORD })).status).toBe(200);
  const accountId = (await api.get('/dashboard/api/session')).body.account_id as string;
  // Credit by bank transfer (an operator's manual top-up), then the account is closed with it on it.
  const topUp = await fetch(`${tg.url}/admin/accounts/${accountId}/top-ups`, {
    method: 'POST',
    headers: { authorization: `Bearer ${tg.adminKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ amount_usd: '42.50', reference: 'TR-grace-1', reason: 'bank transfer' }),
  });
  expect(topUp.status).toBe(201);
  const closed = await tg.gateway.ledger.accounts.handle(accountStreamId(accountId), {
    type: 'CloseAccount',
    data: { reason: 'customer_request' },
    metadata: systemMetadata('test'),
  });
  if (!closed.ok) throw new Error(`closure refused: ${closed.error.error}`);
  const closedAt = closed.events.find(({ event }) => event.type === 'AccountClosed')!.event.metadata.occurredAt;
  const deadline = new Date(Date.parse(closedAt) + 360 * 86_400_000).toISOString().replace('T', ' ').slice(0, 16);

  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  watch(page);
  await page.goto(`${tg.url}/dashboard/`);
  await page.getByLabel('Email').fill('grace@claim.test');
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
  await page.goto(`${tg.url}/dashboard/#/billing`);
  await page.locator('#refund-claim').waitFor();
  await expect(page.locator('#claimable-amount').textContent()).resolves.toBe('$42.50');
  await expect(page.locator('#claim-deadline').textContent()).resolves.toBe(`${deadline} UTC`);
  // A closed account buys nothing: no top-up form.
  await expect(page.getByRole('button', { name: 'Top up with a card' }).count()).resolves.toBe(0);
  await expect(page.getByRole('button', { name: 'Set VAT ID' }).count()).resolves.toBe(0);
  await screenshot(page, 'refund-claim-before');

  await page.getByRole('button', { name: 'Claim refund' }).click();
  await expect(page.locator('#refund-claim [role="status"].ok').textContent()).resolves.toMatch(/Claimed \$42\.50\. \$42\.50 is paid to you by support/);
  // The claim in the history; nothing more to claim; the button gone.
  await page.locator('#payments-table td', { hasText: 'Refund claimed' }).waitFor();
  await expect(page.locator('#claimable-amount').textContent()).resolves.toBe('$0.00');
  await expect(page.locator('#claim-outstanding').textContent()).resolves.toBe('$42.50');
  await expect(page.getByRole('button', { name: 'Claim refund' }).count()).resolves.toBe(0);
  await screenshot(page, 'refund-claim-after');

  const claims = (await tg.gateway.store.readStream(accountStreamId(accountId))).events.filter((e) => e.event.type === 'RefundClaimed');
  expect(claims.map((c) => [c.event.data, c.event.metadata.actor])).toEqual([
    [expect.objectContaining({ amount: 42_500_000n }), { kind: 'user', userId: (await api.get('/dashboard/api/session')).body.user_id }],
  ]);
  await context.close();
}, 120_000);

test("a closed account's keys page says the account is closed and shows no create or limits form", async () => {
  const api = new DashboardClient(tg.url);
  expect((await api.post('/dashboard/api/sign-up', { email: 'ada@closed.test', name: 'Ada', password: PASSWORD, organisation: 'Engines' })).status).toBe(202);
  expect((await api.post('/dashboard/api/verify-email', { token: linkTokenIn(await smtp.waitFor('ada@closed.test')) })).status).toBe(200);
  expect((await api.post('/dashboard/api/sign-in', { email: 'ada@closed.test', password: PASSWORD })).status).toBe(200);
  expect((await api.post('/v1/account/keys', { name: 'laptop' })).status).toBe(201);

  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  watch(page);
  const signIn = async () => {
    await page.getByLabel('Email').fill('ada@closed.test');
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('button', { name: 'Sign out' }).waitFor();
  };
  await page.goto(`${tg.url}/dashboard/`);
  await signIn();
  // While the account is open, its owner has the form and the key's buttons: what closure must take away.
  await page.goto(`${tg.url}/dashboard/#/keys`);
  await page.getByRole('button', { name: 'Create key' }).waitFor();
  await page.getByRole('button', { name: 'Limits of key laptop' }).waitFor();
  await signOut(page);

  const closed = await api.post('/v1/account/close');
  expect(closed.status).toBe(200);
  expect(closed.body).toMatchObject({ status: 'closed', keys_revoked: 1 });

  await signIn();
  await page.goto(`${tg.url}/dashboard/#/keys`);
  // The list shows (revoked), but nothing to fill in or press, and the page says why.
  await expect(page.locator('#keys-table tr', { hasText: 'laptop' }).textContent()).resolves.toMatch(/revoked/);
  await expect(page.locator('#keys-closed').textContent()).resolves.toMatch(/This account is closed: its keys are revoked and no key can be created/);
  await expect(page.locator('main form').count()).resolves.toBe(0);
  await expect(page.locator('main button').count()).resolves.toBe(0);
  await screenshot(page, 'keys-closed-account');
  await context.close();
}, 120_000);
