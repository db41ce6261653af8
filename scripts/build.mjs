// `npm run build` (and `npm install`, through `prepare`): compiles the gateway and the CLI to
// dist/ with tsc (tsconfig.build.json), so that `npm start` and `tollgate` run JavaScript
// instead of compiling TypeScript on every start. dist/ is rebuilt from nothing each time, so a
// deleted source file cannot live on in it. Files the code reads at run time next to itself
// (the dashboard's static pages) are copied beside the compiled code.
//
// `--if-stale` (the test suite's global setup) builds only when a source is newer than the last
// build, so the tests that run the compiled CLI and gateway never run stale code.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const stamp = join(dist, '.built');
const SOURCES = ['domain', 'projections', 'adapters', 'src', 'tsconfig.json', 'tsconfig.build.json', 'package.json', 'scripts/build.mjs'];
const ASSETS = ['adapters/http/dashboard/static'];

function newestMtime(path) {
  const stats = statSync(path);
  if (!stats.isDirectory()) return stats.mtimeMs;
  let newest = stats.mtimeMs; // a deleted or renamed file changes its directory's mtime
  for (const entry of readdirSync(path)) newest = Math.max(newest, newestMtime(join(path, entry)));
  return newest;
}

if (process.argv.includes('--if-stale') && existsSync(stamp)) {
  const built = statSync(stamp).mtimeMs;
  if (SOURCES.every((source) => newestMtime(join(root, source)) <= built)) process.exit(0);
}

rmSync(dist, { recursive: true, force: true });
const tsc = join(dirname(createRequire(import.meta.url).resolve('typescript/package.json')), 'bin', 'tsc');
try {
  execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { cwd: root, stdio: 'inherit' });
} catch {
  process.stderr.write('tollgate: the build failed (tsc -p tsconfig.build.json); see the errors above\n');
  process.exit(1);
}
for (const dir of ASSETS) cpSync(join(root, dir), join(dist, dir), { recursive: true });
writeFileSync(stamp, `${new Date().toISOString()}\n`);
