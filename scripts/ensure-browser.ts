/**
 * `npm test`'s pretest: makes sure the browser tests (test/browser) have a browser before the
 * suite starts, so that a missing one fails at once rather than minutes in, and never skips.
 * Found (test/support/find-browser.ts): nothing to do. Missing, as root on Debian: installs
 * Debian's Chromium as .ci/run does. Otherwise: one line saying what to install or set, exit 1.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { findBrowser } from '../test/support/find-browser';

function main(): number {
  const search = findBrowser();
  if (search.found) return 0;
  const rootOnDebian = process.getuid?.() === 0 && existsSync('/etc/debian_version') && existsSync('/usr/bin/apt-get') && !process.env['CHROMIUM_PATH'];
  if (rootOnDebian) {
    process.stderr.write("tollgate tests: no browser found; installing Debian's chromium (apt-get install -y chromium) for the browser tests\n");
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    execFileSync('apt-get', ['update'], { stdio: 'inherit', env });
    execFileSync('apt-get', ['install', '-y', 'chromium'], { stdio: 'inherit', env });
    const again = findBrowser();
    if (again.found) return 0;
    process.stderr.write(`tollgate tests: ${again.message}\n`);
    return 1;
  }
  process.stderr.write(`tollgate tests: ${search.message}\n`);
  return 1;
}

process.exitCode = main();
