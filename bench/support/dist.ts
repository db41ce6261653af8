import { execFileSync } from 'node:child_process';
import { join, resolve } from 'node:path';

const repo = resolve(__dirname, '..', '..');

/**
 * The compiled gateway, as users run it (`npm start` = `node dist/src/main.js`): a bench measures
 * what runs in production, not tsx compiling TypeScript at start-up (seconds of CPU, and a loader
 * thread in every process).
 */
export const GATEWAY_MAIN = join(repo, 'dist', 'src', 'main.js');

/**
 * Rebuilds dist/ when a source is newer than the last build (`node scripts/build.mjs --if-stale`,
 * as jest's global setup does), so a bench never measures stale code. Throws if the build fails.
 */
export function buildIfStale(): void {
  execFileSync(process.execPath, [join(repo, 'scripts', 'build.mjs'), '--if-stale'], { cwd: repo, stdio: 'inherit' });
}
