import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runToCompletion } from '../../support/processes';

// bench/syscalls.ts is a bench, and CI does not install strace: without it, it says so and exits 2
// (not 1, an invalid run; not 0, figures printed), having started nothing.
test('bench/syscalls.ts without strace on the PATH says so and exits 2; --help explains it', async () => {
  const empty = mkdtempSync(join(tmpdir(), 'no-strace-'));
  try {
    const run = await runToCompletion(process.execPath, ['--import', 'tsx', 'bench/syscalls.ts'], { PATH: empty });
    expect(run.stderr).toContain('needs strace, which is not installed here');
    expect(run.stdout).toBe('');
    expect(run.code).toBe(2);
    const help = await runToCompletion(process.execPath, ['--import', 'tsx', 'bench/syscalls.ts', '--help'], {});
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('System calls per request');
    expect(help.stdout).toContain('exits 2 without it');
  } finally {
    rmSync(empty, { recursive: true, force: true });
  }
});
