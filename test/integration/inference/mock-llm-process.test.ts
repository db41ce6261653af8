import { spawn } from 'node:child_process';
import { freePort } from '../../support/mock-llm';
import { repoRoot } from '../../support/processes';
import { until } from '../../support/wait';

/**
 * The stand-in upstream of a first run is a child process of the gateway. A gateway killed with
 * SIGKILL runs no exit handler; its stand-in must not outlive it.
 */
test('a mock-llm child process ends when its parent is SIGKILLed', async () => {
  const port = await freePort();
  const parent = spawn(
    process.execPath,
    ['--import', 'tsx', '-e', `require('./adapters/inference/mock-llm-process.ts').launchMockLlm({ rules: [] }, ${port}).then(() => console.log('ready'))`],
    { cwd: repoRoot, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let output = '';
  parent.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  await until(() => (output.includes('ready') ? true : undefined), { what: 'mock-llm to start', timeoutMs: 30_000 });
  expect((await fetch(`http://127.0.0.1:${port}/health`)).status).toBe(200);

  parent.kill('SIGKILL');
  await until(
    () =>
      fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(1_000) }).then(
        () => undefined,
        () => true, // refused: the stand-in is gone
      ),
    { what: 'the orphaned mock-llm to exit', timeoutMs: 15_000, intervalMs: 100 },
  );
});
