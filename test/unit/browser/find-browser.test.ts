import { resolve } from 'node:path';
import { DEBIAN_CHROMIUM, findBrowser, usualBrowserPaths } from '../../support/find-browser';
import { repoRoot, runToCompletion } from '../../support/processes';

const MAC_CHROME = '/Applications/Google Chrome.app/Contents/MacOS/Google Chrome';
const only =
  (...present: string[]) =>
  (path: string) =>
    present.includes(path);

test("CHROMIUM_PATH comes first, then Debian's path, then the usual Linux and macOS paths", () => {
  expect(findBrowser({ CHROMIUM_PATH: '/opt/mine/chrome' }, only('/opt/mine/chrome', DEBIAN_CHROMIUM))).toEqual({ found: true, path: '/opt/mine/chrome' });
  expect(findBrowser({}, only(DEBIAN_CHROMIUM, '/usr/bin/google-chrome'))).toEqual({ found: true, path: DEBIAN_CHROMIUM });
  expect(findBrowser({}, only('/usr/bin/google-chrome'))).toEqual({ found: true, path: '/usr/bin/google-chrome' });
  expect(findBrowser({}, only(MAC_CHROME))).toEqual({ found: true, path: MAC_CHROME });
  expect(findBrowser({}, only('/home/ada/Applications/Chromium.app/Contents/MacOS/Chromium'), '/home/ada')).toMatchObject({ found: true });
  expect(usualBrowserPaths()[0]).toBe(DEBIAN_CHROMIUM);
});

test('a CHROMIUM_PATH that is not executable is an error, not a reason to use another browser', () => {
  const search = findBrowser({ CHROMIUM_PATH: '/nowhere/chrome' }, only(DEBIAN_CHROMIUM));
  expect(search).toEqual({ found: false, message: 'CHROMIUM_PATH=/nowhere/chrome is not an executable: point it at Chromium or Google Chrome, or unset it' });
});

test('with no browser anywhere, one line says what to install or set', () => {
  const search = findBrowser({}, only());
  expect(search.found).toBe(false);
  if (search.found) return;
  expect(search.message).not.toContain('\n');
  expect(search.message).toContain('apt-get install -y chromium');
  expect(search.message).toContain('brew install --cask chromium');
  expect(search.message).toContain('CHROMIUM_PATH');
});

test("npm test's pretest (scripts/ensure-browser.ts) stops at once with that one line when the browser cannot be found", async () => {
  const tsx = resolve(repoRoot, 'node_modules/tsx/dist/cli.mjs');
  const result = await runToCompletion(process.execPath, [tsx, 'scripts/ensure-browser.ts'], { CHROMIUM_PATH: '/nowhere/chrome' });
  expect(result).toMatchObject({ code: 1, stdout: '' });
  expect(result.stderr).toBe('tollgate tests: CHROMIUM_PATH=/nowhere/chrome is not an executable: point it at Chromium or Google Chrome, or unset it\n');

  const found = await runToCompletion(process.execPath, [tsx, 'scripts/ensure-browser.ts'], { CHROMIUM_PATH: process.execPath });
  expect(found).toMatchObject({ code: 0, stdout: '', stderr: '' });
});
