/**
 * How long `tollgate --help` takes to answer, compiled (what bin/tollgate runs since the CLI is
 * built to dist/) against compiling the sources with tsx on every call (what it did before,
 * and what `npm run cli` still does), measured in the same run:
 *   npx tsx bench/cli-startup.ts [--runs 10] [--args "--help"] [--before <checkout>]
 * Each command runs as a fresh child process, `--runs` times, round-robin so that the machine's
 * load falls on all of them alike; a run counts only if it exits 0. Prints the median, p90 and
 * min wall time of each and its ratio to the tsx baseline's median. `--before <checkout>` adds
 * another checkout's bin/tollgate (for example the last commit before the build step).
 * Build first (`npm run build`, or npm install does it). The target was `npx tollgate --help`
 * under 0.5 s: the rows for `npx tsc --version` and an empty node process show how much of any
 * npx call is npm's and node's own start-up, which no change to Tollgate can remove (npm 11 also
 * resolves a package's own bin, as `npx tollgate` is inside this repo, by loading the whole
 * installed tree first).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = resolve(__dirname, '..');
const flag = (name: string) => {
  const at = process.argv.indexOf(name);
  return at > 0 ? process.argv[at + 1] : undefined;
};
const runs = Number(flag('--runs') ?? 10);
const args = (flag('--args') ?? '--help').split(' ').filter(Boolean);
const before = flag('--before');

if (!existsSync(join(root, 'dist', 'src', 'cli', 'tollgate.js'))) {
  process.stderr.write('bench/cli-startup: build first (npm run build)\n');
  process.exit(2);
}

interface Subject {
  readonly label: string;
  readonly command: string;
  readonly argv: readonly string[];
  readonly cwd: string;
  readonly times: number[];
}
const subject = (label: string, command: string, argv: readonly string[], cwd = root): Subject => ({ label, command, argv, cwd, times: [] });

const baseline = subject(`npx tsx src/cli/tollgate.ts ${args.join(' ')}   (baseline: compiled on every call)`, 'npx', ['tsx', 'src/cli/tollgate.ts', ...args]);
const subjects: Subject[] = [
  baseline,
  subject(`node --require tsx/cjs src/cli/tollgate.ts ${args.join(' ')}   (what bin/tollgate did)`, process.execPath, [
    '--require',
    'tsx/cjs',
    'src/cli/tollgate.ts',
    ...args,
  ]),
  subject(`bin/tollgate ${args.join(' ')}   (compiled)`, join(root, 'bin', 'tollgate'), args),
  subject(`npx tollgate ${args.join(' ')}   (compiled, through npx)`, 'npx', ['tollgate', ...args]),
  subject(`npx tsc --version   (npx's own cost for a local bin, for scale)`, 'npx', ['tsc', '--version']),
  subject(`node -e ''   (an empty node process, for scale)`, process.execPath, ['-e', '']),
];
if (before)
  subjects.splice(1, 0, subject(`${before}/bin/tollgate ${args.join(' ')}   (--before)`, join(resolve(before), 'bin', 'tollgate'), args, resolve(before)));

for (let run = 0; run < runs; run++) {
  for (const s of subjects) {
    const started = process.hrtime.bigint();
    const result = spawnSync(s.command, s.argv, { cwd: s.cwd, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    if (result.status !== 0) {
      process.stderr.write(`bench/cli-startup: ${s.label} exited ${result.status}: ${result.stderr.trim().split('\n')[0] ?? ''}\n`);
      process.exit(1);
    }
    s.times.push(ms);
  }
  process.stderr.write(`\rrun ${run + 1}/${runs}`);
}
process.stderr.write('\n');

const quantile = (sorted: readonly number[], q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
const median = (times: readonly number[]) =>
  quantile(
    [...times].sort((a, b) => a - b),
    0.5,
  );
const base = median(baseline.times);
const seconds = (ms: number) => `${(ms / 1_000).toFixed(3)} s`;
process.stdout.write(`${runs} runs each, ${new Date().toISOString()}, node ${process.version}\n`);
process.stdout.write(`${'command'.padEnd(84)} ${'median'.padStart(9)} ${'p90'.padStart(9)} ${'min'.padStart(9)}  vs baseline\n`);
for (const s of subjects) {
  const sorted = [...s.times].sort((a, b) => a - b);
  const m = quantile(sorted, 0.5);
  process.stdout.write(
    `${s.label.padEnd(84)} ${seconds(m).padStart(9)} ${seconds(quantile(sorted, 0.9)).padStart(9)} ${seconds(sorted[0]!).padStart(9)}  ${(m / base).toFixed(2)}x\n`,
  );
}
