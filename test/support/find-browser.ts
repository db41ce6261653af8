import { accessSync, constants } from 'node:fs';
import { homedir } from 'node:os';

/** Where Debian's package puts Chromium; `.ci/run` and `npm test`'s pretest install it there. */
export const DEBIAN_CHROMIUM = '/usr/bin/chromium';

/** After CHROMIUM_PATH and Debian's path, in this order: the usual Chromium and Chrome paths on Linux and macOS. */
export function usualBrowserPaths(home: string = homedir()): string[] {
  const mac = (app: string, binary: string) => [
    `/Applications/${app}.app/Contents/MacOS/${binary}`,
    `${home}/Applications/${app}.app/Contents/MacOS/${binary}`,
  ];
  return [
    DEBIAN_CHROMIUM,
    '/usr/bin/chromium-browser',
    '/snap/bin/chromium',
    '/usr/bin/google-chrome-stable',
    '/usr/bin/google-chrome',
    '/opt/google/chrome/chrome',
    ...mac('Chromium', 'Chromium'),
    ...mac('Google Chrome', 'Google Chrome'),
  ];
}

export type BrowserSearch = { found: true; path: string } | { found: false; message: string };

export function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The browser the browser tests drive: CHROMIUM_PATH when set (and then only it: a wrong
 * setting is an error, not a reason to pick another browser), else the first usual path that
 * holds an executable. When none does, `message` is the one line saying what to install or set.
 */
export function findBrowser(env: NodeJS.ProcessEnv = process.env, executable: (path: string) => boolean = isExecutable, home?: string): BrowserSearch {
  const chosen = env['CHROMIUM_PATH'];
  if (chosen !== undefined && chosen !== '') {
    return executable(chosen)
      ? { found: true, path: chosen }
      : { found: false, message: `CHROMIUM_PATH=${chosen} is not an executable: point it at Chromium or Google Chrome, or unset it` };
  }
  const candidates = usualBrowserPaths(home);
  const path = candidates.find(executable);
  if (path !== undefined) return { found: true, path };
  return {
    found: false,
    message:
      'no Chromium or Chrome for the browser tests: install Chromium (Debian/Ubuntu: apt-get install -y chromium; macOS: brew install --cask chromium) ' +
      `or set CHROMIUM_PATH to a Chromium or Chrome executable (looked in ${candidates.join(', ')})`,
  };
}
