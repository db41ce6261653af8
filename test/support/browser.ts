import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { findBrowser } from './find-browser';

/** Screenshots of every dashboard page, kept as test artifacts (gitignored). */
export const SCREENSHOT_DIR = resolve(__dirname, '../../test-artifacts/screenshots');

/**
 * Headless Chromium (or Chrome) for the browser tests, found by findBrowser: CHROMIUM_PATH,
 * Debian's /usr/bin/chromium, then the usual Linux and macOS paths. A missing browser fails the
 * test loudly instead of skipping it (npm test's pretest, scripts/ensure-browser.ts, already
 * stopped the run or installed one). Playwright gives every launch a fresh, temporary user-data-dir.
 */
export async function launchChromium(): Promise<Browser> {
  const search = findBrowser();
  if (!search.found) throw new Error(search.message);
  return chromium.launch({
    executablePath: search.path,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-quic',
      '--no-first-run',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** Saves a full-page screenshot as test-artifacts/screenshots/<name>.png. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const path = join(SCREENSHOT_DIR, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/**
 * Signs the dashboard out and waits until the person's sign-in form shows. Sign-out ends the
 * session on the server first and only then clears the hash, so a page opened before that
 * (say #/key-sign-in) would be replaced by the sign-in page. The form is found by its password
 * field's id: a label "Password" also matches the profile page's fields while it still shows,
 * which failed the wait (more than one match) when the click was made there.
 */
export async function signOut(page: Page): Promise<void> {
  await page.getByRole('button', { name: 'Sign out' }).click();
  // The sign-in form's own field: getByLabel('Password') also matches the profile page's password
  // section and fields while that page is still up, a strict-mode error.
  await page.locator('#sign-in-password').waitFor();
}

/**
 * Every part of the page has loaded (a page may show several "Loading…" at once). The condition is
 * a function, never a string: Playwright evaluates a string condition again on every poll, and the
 * dashboard's CSP (no 'unsafe-eval') refuses those later evaluations whenever Chromium's exemption
 * for DevTools does not cover them, which failed a CI run (microsoft/playwright#36986). A function
 * is evaluated once, inside the exempt call, and only called after.
 */
export async function settled(page: Page): Promise<void> {
  await page.locator('h1').waitFor();
  // biome-ignore lint/performance/useDomNodeTextContent: the text shown is what counts, as before.
  await page.waitForFunction(() => !(globalThis as unknown as { document: { body: { innerText: string } } }).document.body.innerText.includes('Loading…'));
}
