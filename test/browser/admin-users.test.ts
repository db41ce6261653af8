import * as OTPAuth from 'otpauth';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { systemMetadata } from '../../src/command-metadata';
import { launchChromium, screenshot, signOut } from '../support/browser';
import { DashboardClient } from '../support/dashboard-client';
import { startTestGateway, type TestGateway } from '../support/gateway';

/**
 * Operators as people in the dashboard (issue 14), in headless Chromium against a real gateway:
 * the operator sign-in (password, then the TOTP code when two-factor is on) leads to the admin
 * pages the person's role allows, and no others.
 */

const MODELS = [{ id: 'm', upstreams: [{ baseUrl: 'http://127.0.0.1:9/v1', capacity: 1 }], maxOutputTokens: 10, operations: ['chat' as const] }];
const PASSWORD = 'brass lanterns over the quay';

let browser: Browser;
let tg: TestGateway;
let totp: OTPAuth.TOTP;

beforeAll(async () => {
  browser = await launchChromium();
  tg = await startTestGateway({ models: MODELS, env: { TOLLGATE_BCRYPT_COST: '4' } });
  const metadata = { ...systemMetadata('test'), actor: { kind: 'admin' as const, adminId: 'founder' } };
  for (const [email, role] of [
    ['operator@ops.example.test', 'operator'],
    ['finance@ops.example.test', 'finance'],
  ] as const) {
    const added = await tg.gateway.identity.addAdminUser({ email, password: PASSWORD, role }, metadata);
    if (!added.ok) throw new Error(added.error.message);
  }
  // The operator turns two-factor on (through the API: the profile page's flow has its own test).
  const client = new DashboardClient(tg.url);
  expect((await client.post('/dashboard/api/sign-in', { email: 'operator@ops.example.test', password: PASSWORD })).status).toBe(200);
  const enrolment = await client.post('/dashboard/api/me/two-factor');
  totp = new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(enrolment.body.secret) });
  expect((await client.post('/dashboard/api/me/two-factor/confirm', { code: totp.generate() })).status).toBe(200);
}, 90_000);

afterAll(async () => {
  await tg?.stop();
  await browser?.close();
});

async function newPage(): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.on('pageerror', (error) => {
    throw error;
  });
  return { context, page };
}

async function operatorSignIn(page: Page, email: string): Promise<void> {
  await page.goto(`${tg.url}/dashboard/#/admin-sign-in`);
  await page.getByRole('heading', { name: 'Operator sign-in' }).waitFor();
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

const navLinks = (page: Page) => page.locator('nav[aria-label="Dashboard"] a').allTextContents();

test('a finance person signs in on the operator page and sees the finance page only: the verification and the journal; other admin calls answer 403', async () => {
  const { context, page } = await newPage();
  await operatorSignIn(page, 'finance@ops.example.test');
  await page.getByRole('heading', { name: 'Finance' }).waitFor();
  await expect(page.locator('#who').textContent()).resolves.toBe('Operator · finance');
  const links = await navLinks(page);
  expect(links).toContain('Finance');
  for (const other of ['Accounts', 'Admin users', 'Audit log', 'Data export', 'Models and prices']) expect(links).not.toContain(other);
  await page.getByRole('button', { name: 'Verify now' }).click();
  await expect(page.locator('#verify-result').textContent()).resolves.toMatch(/^\s*OK: \d+ accounts/);
  await page.locator('#journal-table').waitFor();
  await screenshot(page, 'admin-finance');
  const refused = await page.evaluate<{ status: number; code: string }>(
    `fetch('/admin/accounts', { headers: { 'x-tollgate-dashboard': '1' } }).then(async (r) => ({ status: r.status, code: (await r.json()).error.code }))`,
  );
  expect(refused).toEqual({ status: 403, code: 'insufficient_role' });
  await signOut(page);
  await context.close();
}, 90_000);

test('an operator with two-factor gives the code after the password, then manages admin users; the last operator cannot remove themselves', async () => {
  const { context, page } = await newPage();
  await operatorSignIn(page, 'operator@ops.example.test');
  await page.getByLabel('Code').waitFor();
  // The next 30-second step's code (the enrolment used the current one).
  await page.getByLabel('Code').fill(totp.generate({ timestamp: Date.now() + 30_000 }));
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
  await expect(page.locator('#who').textContent()).resolves.toBe('Operator · operator');
  const links = await navLinks(page);
  for (const mine of ['Accounts', 'Finance', 'Admin users']) expect(links).toContain(mine);
  for (const compliance of ['Audit log', 'Data export']) expect(links).not.toContain(compliance);

  await page.getByRole('link', { name: 'Admin users' }).click();
  const table = page.locator('#admin-users-table');
  await table.getByText('finance@ops.example.test').waitFor();
  await page.getByLabel('Role of finance@ops.example.test').selectOption('compliance');
  await page.getByText('finance@ops.example.test is now compliance.').waitFor();
  const self = table.locator('tr', { hasText: 'operator@ops.example.test (you)' });
  await self.getByRole('button', { name: 'Remove' }).click();
  await expect(page.getByRole('alert').textContent()).resolves.toContain('last admin user with the operator role');
  await screenshot(page, 'admin-users');
  await expect(tg.gateway.identity.adminRole((await tg.gateway.identity.userIdOfEmail('operator@ops.example.test'))!)).resolves.toBe('operator');
  await signOut(page);

  // The re-roled person now reaches the compliance pages, and the export.
  await operatorSignIn(page, 'finance@ops.example.test');
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
  const now = await navLinks(page);
  for (const mine of ['Accounts', 'Audit log', 'Data export']) expect(now).toContain(mine);
  expect(now).not.toContain('Finance');
  await signOut(page);
  await context.close();
}, 90_000);
