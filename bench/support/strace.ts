// Attaching strace to running processes and reading its -c summary, for bench/syscalls.ts.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Counts by system call from `strace -c` output (its summary table), with `total`. */
export function parseStraceSummary(text: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of text.split('\n')) {
    // % time  seconds  usecs/call  calls  [errors]  syscall
    const fields = line.trim().split(/\s+/);
    if (fields.length < 5 || !/^\d+(\.\d+)?$/.test(fields[0]!)) continue;
    const name = fields[fields.length - 1]!;
    const calls = Number(fields[3]);
    if (!Number.isFinite(calls)) continue;
    counts.set(name, (counts.get(name) ?? 0) + calls);
  }
  return counts;
}

/** strace -c -f attached to `pids` (every thread of each); stop() detaches it and returns its counts. */
export async function attachStrace(pids: readonly number[], outFile: string): Promise<{ stop(): Promise<Map<string, number>> }> {
  const child = spawn('strace', ['-c', '-f', '-o', outFile, ...pids.flatMap((pid) => ['-p', String(pid)])], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const attached = new Promise<void>((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`strace did not attach to ${pids.join(', ')} within 20 s: ${stderr}`)), 20_000);
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      // one "Process N attached" line per pid given (with -f: "... attached with K threads")
      if ((stderr.match(/Process \d+ attached/g) ?? []).length >= pids.length) {
        clearTimeout(timer);
        done();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`strace exited (code ${code}) before attaching: ${stderr}`));
    });
  });
  await attached;
  return {
    async stop() {
      if (child.exitCode === null) {
        await new Promise<void>((done) => {
          child.once('exit', () => done());
          child.kill('SIGINT'); // detaches and writes the summary
        });
      }
      return parseStraceSummary(readFileSync(outFile, 'utf8'));
    },
  };
}
