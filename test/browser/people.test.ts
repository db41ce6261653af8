import * as OTPAuth from 'otpauth';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { systemMetadata } from '../../src/command-metadata';
import { launchChromium, screenshot, signOut } from '../support/browser';
import { createTestDatabase } from '../support/database';
import { startTestGateway, type TestGateway } from '../support/gateway';
import { TestSmtpServer } from '../support/smtp';
import { until } from '../support/wait';

/**
 * People in the dashboard, in headless Chromium against a real gateway, real SMTP (smtp-server)
 * and real PostgreSQL: sign-up, the emailed confirmation link, password sign-in, two-factor,
 * forgotten password, profile, sessions, roles, and a session that outlives its gateway.
 */

const MODELS = [{ id: 'm', upstreams: [{ baseUrl: 'http://127.0.0.1:9/v1', capacity: 1 }], maxOutputTokens: 10, operations: ['chat' as const] }];
const PASSWORD = 'copper kites drift past noon';

let smtp: TestSmtpServer;
let browser: Browser;
let tg: TestGateway;
let databaseUrl: string;
const env = () => ({ SMTP_URL: smtp.url, TOLLGATE_MAIL_POLL_INTERVAL_S: '0.05', TOLLGATE_BCRYPT_COST: '4' });

beforeAll(async () => {
  smtp = await new TestSmtpServer().start();
  browser = await launchChromium();
  databaseUrl = await createTestDatabase('people');
  tg = await startTestGateway({ models: MODELS, databaseUrl, env: env() });
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

async function newPage(): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  watch(page);
  return { context, page };
}

/**
 * Link of the first mail to `address` that leads to `route` (verify, reset), made absolute
 * against the gateway under test. Found by its route, not by its place among the address's
 * mails: each mail is its own outbox row, sent on its own, and one retried on a loaded machine
 * arrives after a later one (a reset link taken as "the second mail" was once the verification).
 */
async function mailedLink(address: string, route: 'verify' | 'reset'): Promise<string> {
  const pattern = new RegExp(`https?://[^\\s]+#/${route}\\?token=[A-Za-z0-9_-]+`);
  const link = await until(
    () =>
      smtp
        .to(address)
        .map((mail) => pattern.exec(mail.text)?.[0])
        .find((found) => found !== undefined),
    {
      what: `a ${route} link mailed to ${address}`,
    },
  );
  return link.replace(/^https?:\/\/[^/]+/, tg.url);
}

async function signUp(page: Page, email: string): Promise<void> {
  await page.goto(`${tg.url}/dashboard/#/sign-up`);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Your name').fill('Ada Lovelace');
  await page.getByLabel('Organisation').fill('Analytical Engines');
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.locator('#sign-up-done').waitFor();
}

async function verify(page: Page, email: string): Promise<void> {
  await page.goto(await mailedLink(email, 'verify'));
  await page.getByRole('button', { name: 'Confirm my email address' }).click();
  await page.locator('#verify-done').waitFor();
}

async function signIn(page: Page, email: string, password = PASSWORD): Promise<void> {
  await page.goto(`${tg.url}/dashboard/`);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

async function signedIn(page: Page): Promise<void> {
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
}

test('sign-up, the emailed link, password sign-in, then a key; a weak password is refused with a clear message', async () => {
  const { context, page } = await newPage();
  await page.goto(`${tg.url}/dashboard/#/sign-up`);
  await screenshot(page, 'sign-up');
  await page.getByLabel('Email').fill('weak@example.test');
  await page.getByLabel('Your name').fill('W');
  await page.getByLabel('Organisation').fill('W Ltd');
  await page.getByLabel('Password').fill('password1234');
  await page.getByRole('button', { name: 'Create account' }).click();
  await expect(page.getByRole('alert').textContent()).resolves.toMatch(/too common or too easy to guess/);

  await signUp(page, 'ada@example.test');
  await verify(page, 'ada@example.test');
  await screenshot(page, 'verify');
  await signIn(page, 'ada@example.test');
  await signedIn(page);
  await expect(page.locator('#who').textContent()).resolves.toMatch(/· owner$/);
  await page.goto(`${tg.url}/dashboard/#/keys`);
  await page.getByLabel('Name of the new key').fill('laptop');
  await page.getByRole('button', { name: 'Create key' }).click();
  await expect(page.locator('#new-key-secret').inputValue()).resolves.toMatch(/^tg_/);
  const cookies = await context.cookies();
  expect(cookies).toHaveLength(1);
  expect(cookies[0]).toMatchObject({ name: 'tollgate_session', httpOnly: true, sameSite: 'Strict' });
  expect(cookies[0]!.value).toMatch(/^tgs_/);
  await context.close();
});

test('the confirmation link used a second time is refused, clearly', async () => {
  const { context, page } = await newPage();
  await signUp(page, 'twice@example.test');
  const link = await mailedLink('twice@example.test', 'verify');
  await verify(page, 'twice@example.test');
  await page.goto(link);
  await page.reload();
  await page.getByRole('button', { name: 'Confirm my email address' }).click();
  await expect(page.getByRole('alert').textContent()).resolves.toMatch(/invalid, expired or already used/);
  await context.close();
});

test('forgot password: the emailed link sets a new one, which then signs in; the old one no longer does', async () => {
  const { context, page } = await newPage();
  await signUp(page, 'forgot@example.test');
  await page.goto(`${tg.url}/dashboard/#/forgot`);
  await page.getByLabel('Email').fill('forgot@example.test');
  await page.getByRole('button', { name: 'Send me a reset link' }).click();
  await page.getByText('If this address has an account').waitFor();
  await page.goto(await mailedLink('forgot@example.test', 'reset'));
  await page.reload();
  await page.getByLabel('New password').fill('amber tides under pale moons');
  await page.getByRole('button', { name: 'Change password' }).click();
  await page.locator('#reset-done').waitFor();
  await signIn(page, 'forgot@example.test');
  await expect(page.getByRole('alert').textContent()).resolves.toBe('The email or password is wrong.');
  await signIn(page, 'forgot@example.test', 'amber tides under pale moons');
  await signedIn(page);
  await context.close();
});

test('two-factor: turned on from the profile, then sign-in asks for the code', async () => {
  const { context, page } = await newPage();
  await signUp(page, 'totp@example.test');
  await verify(page, 'totp@example.test');
  await signIn(page, 'totp@example.test');
  await signedIn(page);
  await page.getByRole('link', { name: 'Profile' }).click();
  await page.getByRole('button', { name: 'Turn on two-factor authentication' }).click();
  const secret = (await page.locator('#two-factor-secret').textContent())!;
  const totp = new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(secret) });
  await page.getByLabel('Code from the app').fill(totp.generate());
  await page.getByRole('button', { name: 'Turn on' }).click();
  await page.locator('#recovery-codes li').nth(9).waitFor();
  await expect(page.locator('#recovery-codes li').count()).resolves.toBe(10);
  await page.getByText('On: signing in asks for a code').waitFor();
  await screenshot(page, 'profile');
  await signOut(page);
  await signIn(page, 'totp@example.test');
  await page.getByLabel('Code').waitFor();
  // The next 30-second step's code (the one just used is never accepted twice).
  await page.getByLabel('Code').fill(totp.generate({ timestamp: Date.now() + 30_000 }));
  await page.getByRole('button', { name: 'Continue' }).click();
  await signedIn(page);
  await context.close();
});

test('a viewer sees no create-key button, and the API answers 403', async () => {
  const owner = await newPage();
  await signUp(owner.page, 'owner@example.test');
  await verify(owner.page, 'owner@example.test');
  await signIn(owner.page, 'owner@example.test');
  await signedIn(owner.page);
  const ownerAccount = await owner.page.evaluate<string>(
    `fetch('/dashboard/api/session', { headers: { 'x-tollgate-dashboard': '1' } }).then((r) => r.json()).then((s) => s.account_id)`,
  );
  const viewer = await newPage();
  await signUp(viewer.page, 'viewer@example.test');
  await verify(viewer.page, 'viewer@example.test');
  await signIn(viewer.page, 'viewer@example.test');
  await signedIn(viewer.page);
  const viewerId = await viewer.page.evaluate<string>(
    `fetch('/dashboard/api/session', { headers: { 'x-tollgate-dashboard': '1' } }).then((r) => r.json()).then((s) => s.user_id)`,
  );
  await tg.gateway.identity.addMember(ownerAccount, viewerId, 'viewer', systemMetadata('test'));
  const switched = await viewer.page.evaluate<number>(
    `fetch('/dashboard/api/me/account', { method: 'POST', headers: { 'x-tollgate-dashboard': '1', 'content-type': 'application/json' }, body: JSON.stringify({ account_id: '${ownerAccount}' }) }).then((r) => r.status)`,
  );
  expect(switched).toBe(200);
  await viewer.page.goto(`${tg.url}/dashboard/#/keys`);
  await viewer.page.reload();
  await viewer.page.locator('#keys-table').waitFor();
  await expect(viewer.page.locator('#who').textContent()).resolves.toMatch(/· viewer$/);
  await expect(viewer.page.getByRole('button', { name: 'Create key' }).count()).resolves.toBe(0);
  const refused = await viewer.page.evaluate<{ status: number; code: string }>(
    `fetch('/v1/account/keys', { method: 'POST', headers: { 'x-tollgate-dashboard': '1', 'content-type': 'application/json' }, body: JSON.stringify({ name: 'x' }) }).then(async (r) => ({ status: r.status, code: (await r.json()).error.code }))`,
  );
  expect(refused).toEqual({ status: 403, code: 'insufficient_role' });
  await owner.context.close();
  await viewer.context.close();
});

test('sessions are listed and revocable; a cookie replayed after sign-out is refused', async () => {
  const first = await newPage();
  await signUp(first.page, 'sessions@example.test');
  await signIn(first.page, 'sessions@example.test');
  await signedIn(first.page);
  const second = await newPage();
  await signIn(second.page, 'sessions@example.test');
  await signedIn(second.page);
  await first.page.getByRole('link', { name: 'Sessions' }).click();
  await first.page.locator('#sessions-table tbody tr').nth(1).waitFor();
  await expect(first.page.locator('#sessions-table tbody tr').count()).resolves.toBe(2);
  await screenshot(first.page, 'sessions');
  await first.page.getByRole('button', { name: 'Sign out' }).nth(1).click();
  await first.page.getByText('That session is signed out.').waitFor();
  await second.page.reload();
  await second.page.getByLabel('Password').waitFor();

  const [cookie] = await first.context.cookies();
  await first.page.getByRole('button', { name: 'Sign out' }).first().click();
  await first.page.getByLabel('Password').waitFor();
  await first.context.addCookies([cookie!]);
  await first.page.reload();
  await first.page.getByLabel('Password').waitFor();
  const replay = await first.page.evaluate<number>(`fetch('/v1/account', { headers: { 'x-tollgate-dashboard': '1' } }).then((r) => r.status)`);
  expect(replay).toBe(401);
  await first.context.close();
  await second.context.close();
});

test('a session survives a gateway restart', async () => {
  const { context, page } = await newPage();
  await signUp(page, 'restart@example.test');
  await signIn(page, 'restart@example.test');
  await signedIn(page);
  await tg.stop();
  tg = await startTestGateway({ models: MODELS, databaseUrl, env: env() });
  // A cookie belongs to the host, not the port: the restarted gateway on its new port gets it.
  await page.goto(`${tg.url}/dashboard/`);
  await signedIn(page);
  await expect(page.locator('#who').textContent()).resolves.toMatch(/· owner$/);
  await context.close();
});

test('the profile downloads my data as JSON; an owner closes and deletes the account and sees the erasure date; then deletes themselves', async () => {
  const { context, page } = await newPage();
  await signUp(page, 'mydata@example.test');
  await verify(page, 'mydata@example.test');
  await signIn(page, 'mydata@example.test');
  await signedIn(page);
  await page.getByRole('link', { name: 'Profile' }).click();
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download my data' }).click()]);
  expect(download.suggestedFilename()).toMatch(/^tollgate-export-\d{4}-\d{2}-\d{2}\.json$/);
  const chunks: Buffer[] = [];
  for await (const chunk of (await download.createReadStream())!) chunks.push(chunk as Buffer);
  const exported = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  expect(exported).toMatchObject({ object: 'data_export', user: { profile: { email: 'mydata@example.test', name: 'Ada Lovelace' } } });
  expect(exported.account.personal_data.display_name).toBe('Analytical Engines');

  // The only owner of an open account cannot delete themselves: the refusal says why.
  await page.getByLabel('Password to confirm').fill(PASSWORD);
  await page.getByRole('button', { name: 'Delete me' }).click();
  await expect(page.getByRole('alert').textContent()).resolves.toMatch(/only owner of an account/);

  page.once('dialog', (dialog) => void dialog.accept());
  await page.getByRole('button', { name: 'Close and delete the account' }).click();
  const scheduled = page.locator('#closure-scheduled time');
  await scheduled.waitFor();
  const due = Date.parse((await scheduled.getAttribute('datetime'))!);
  expect(due - Date.now()).toBeGreaterThan(29 * 86_400_000);
  expect(due - Date.now()).toBeLessThan(31 * 86_400_000);
  await expect(page.locator('#closure-scheduled').textContent()).resolves.toMatch(/Personal data will be erased on /);
  await screenshot(page, 'account-closed');

  await page.getByLabel('Password to confirm').fill(PASSWORD);
  await page.getByRole('button', { name: 'Delete me' }).click();
  await page.getByRole('button', { name: 'Sign in' }).waitFor();
  await signIn(page, 'mydata@example.test');
  await expect(page.getByRole('alert').textContent()).resolves.toBe('The email or password is wrong.');
  await context.close();
}, 120_000);
