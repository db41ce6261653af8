import type { Browser, BrowserContext, Page } from 'playwright-core';
import { launchChromium, screenshot } from '../support/browser';
import { startTestGateway, type TestGateway } from '../support/gateway';
import { TestSmtpServer } from '../support/smtp';

/**
 * The Members page in headless Chromium against a real gateway, real SMTP and PostgreSQL: an
 * owner invites an address, the invitee opens the mailed link, creates a login, signs in with the
 * offered role; the link used a second time fails; the owner changes the role and removes them.
 */

const MODELS = [{ id: 'm', upstreams: [{ baseUrl: 'http://127.0.0.1:9/v1', capacity: 1 }], maxOutputTokens: 10, operations: ['chat' as const] }];
const PASSWORD = 'copper kites drift past noon';

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

async function newPage(): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  page.on('pageerror', (error) => {
    throw error;
  });
  return { context, page };
}

async function mailedLink(address: string, count: number): Promise<string> {
  const mail = await smtp.waitFor(address, count);
  const match = /https?:\/\/[^\s]+#\/[a-z-]+\?token=[A-Za-z0-9_-]+/.exec(mail.text);
  expect(match).not.toBeNull();
  return match![0].replace(/^https?:\/\/[^/]+/, tg.url);
}

async function signIn(page: Page, email: string): Promise<void> {
  await page.goto(`${tg.url}/dashboard/`);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#who').waitFor();
}

test('invite → accept by the mailed link → the new member signs in with their role; the link fails the second time; role change and removal', async () => {
  const owner = await newPage();
  const page = owner.page;
  await page.goto(`${tg.url}/dashboard/#/sign-up`);
  await page.getByLabel('Email').fill('olive@example.test');
  await page.getByLabel('Your name').fill('Olive');
  await page.getByLabel('Organisation').fill('Olive Oils');
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.locator('#sign-up-done').waitFor();
  await page.goto(await mailedLink('olive@example.test', 1));
  await page.getByRole('button', { name: 'Confirm my email address' }).click();
  await page.locator('#verify-done').waitFor();
  await signIn(page, 'olive@example.test');

  await page.goto(`${tg.url}/dashboard/#/members`);
  await page.locator('#members-table').getByText('olive@example.test').waitFor();
  await page.getByLabel('Email').fill('pat@example.test');
  await page.getByLabel('Role', { exact: true }).selectOption('billing');
  await page.getByRole('button', { name: 'Send invitation' }).click();
  await page.getByText('Invitation sent to pat@example.test.').waitFor();
  await page.locator('#invitations-table').getByText('pat@example.test').waitFor();
  await screenshot(page, 'members-invited');

  // The invitee opens the mailed link in their own browser and creates a login.
  const invitee = await newPage();
  const link = await mailedLink('pat@example.test', 1);
  await invitee.page.goto(link);
  await invitee.page.getByLabel('Your name').fill('Pat');
  await invitee.page.getByLabel('Password').fill(PASSWORD);
  await invitee.page.getByRole('button', { name: 'Accept the invitation' }).click();
  await invitee.page.locator('#accept-done').getByText('You joined as billing.').waitFor();
  await signIn(invitee.page, 'pat@example.test');
  expect(await invitee.page.locator('#who').textContent()).toContain('· billing');

  // The same link a second time: refused, clearly.
  const replay = await newPage();
  await replay.page.goto(link);
  await replay.page.getByLabel('Your name').fill('Mallory');
  await replay.page.getByLabel('Password').fill('another long passphrase here');
  await replay.page.getByRole('button', { name: 'Accept the invitation' }).click();
  await replay.page.getByRole('alert').getByText('This link is invalid, expired or already used. Ask for a new one.').waitFor();
  expect(await replay.page.locator('#accept-done').count()).toBe(0);
  await screenshot(replay.page, 'members-invitation-reused');

  // The owner sees Pat, makes them a viewer, then removes them: Pat's session ends.
  await page.reload();
  const row = page.locator('#members-table tr', { hasText: 'pat@example.test' });
  await row.waitFor();
  await row.getByLabel('Role of Pat').selectOption('viewer');
  await page.getByText('Pat is now viewer.').waitFor();
  await invitee.page.reload();
  await invitee.page.locator('#who').getByText('· viewer').waitFor();
  await page.locator('#members-table tr', { hasText: 'pat@example.test' }).getByRole('button', { name: 'Remove' }).click();
  await page.getByText('Pat is removed; their sessions here are signed out.').waitFor();
  await page.locator('#members-table tr', { hasText: 'pat@example.test' }).waitFor({ state: 'detached' });
  await invitee.page.reload();
  await invitee.page.getByRole('button', { name: 'Sign in' }).waitFor();

  for (const c of [owner, invitee, replay]) await c.context.close();
}, 120_000);
