import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { stringify } from 'yaml';
import { stopChild } from '../stop-child';

/**
 * Runs the `@dwmkerr/mock-llm` package (an OpenAI-compatible mock server someone else wrote)
 * as a child process on loopback. Used as the labelled stand-in upstream on a first run with
 * no models file, and by the tests as a real upstream process.
 */
export interface MockLlmProcess {
  /** `http://127.0.0.1:<port>/v1` */
  readonly baseUrl: string;
  readonly origin: string;
  readonly port: number;
  stop(): Promise<void>;
}

function mockLlmMain(): string {
  // Resolved here, when a stand-in launches, never at import: @dwmkerr/mock-llm is a dev
  // dependency, absent from a production install (which requires a models file).
  // mock-llm 0.1.29 requires 'uuid' without declaring it: package.json lists uuid for it.
  let manifest: string;
  try {
    manifest = require.resolve('@dwmkerr/mock-llm/package.json');
  } catch {
    throw new Error(
      'the stand-in upstream needs @dwmkerr/mock-llm, a development dependency this install lacks (installed with --omit=dev): set TOLLGATE_MODELS_FILE to serve real models',
    );
  }
  return join(dirname(manifest), 'dist', 'main.js');
}

/** Runs mock-llm's main (process.argv[1]) and exits when stdin, the pipe from the parent, ends. */
const EXIT_WITH_PARENT = "process.stdin.on('end', () => process.exit(0)).on('error', () => process.exit(0)).resume(); require(process.argv[1]);";

// Children still running when this process exits (a crash, process.exit) go with it, so a
// stand-in never outlives its gateway.
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export async function launchMockLlm(config: object | string, port: number, timeoutMs = 10_000): Promise<MockLlmProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'mock-llm-'));
  const file = join(dir, 'mock-llm.yaml');
  writeFileSync(file, typeof config === 'string' ? config : stringify(config));
  // Its stdin is a pipe from this process, and it exits when the pipe closes: a gateway killed
  // with SIGKILL (no 'exit' handler runs) does not leave its stand-in behind.
  const child = spawn(process.execPath, ['-e', EXIT_WITH_PARENT, mockLlmMain(), '--config', file], {
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-2_000);
  });
  running.add(child);
  child.once('exit', () => running.delete(child));
  const origin = `http://127.0.0.1:${port}`;
  const stop = async () => {
    await stopChild(child, 3_000);
    rmSync(dir, { recursive: true, force: true });
  };
  if (!(await waitUntilReady(origin, child, timeoutMs))) {
    await stop();
    throw new Error(`mock-llm did not start on port ${port}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`);
  }
  return { baseUrl: `${origin}/v1`, origin, port, stop };
}

async function waitUntilReady(origin: string, child: ChildProcess, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) return false;
    try {
      const response = await fetch(`${origin}/health`, { signal: AbortSignal.timeout(1_000) });
      if (response.ok) return true;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return false;
}

/**
 * A mock-llm rule answering chat completions with `content` (a literal, or a template such as
 * `{{jmes request body.messages[-1].content}}`) and, when given, OpenAI-shaped `usage`.
 */
export function chatCompletionRule(content: string, usage?: object, match = '@'): object {
  const usageField = usage ? `,"usage":${JSON.stringify(usage)}` : '';
  return {
    path: '/v1/chat/completions',
    method: 'POST',
    match,
    response: {
      status: 200,
      content: `{"id":"chatcmpl-{{timestamp}}","object":"chat.completion","created":1700000000,"model":"{{jmes request body.model}}","choices":[{"index":0,"message":{"role":"assistant","content":"${content}"},"finish_reason":"stop"}]${usageField}}`,
    },
  };
}

/** The stand-in's model and its answers: clearly labelled, with usage so billing is exact. */
export const STAND_IN_MODEL = 'tollgate-demo';

export function standInConfig(): object {
  const answer = 'Hello from the Tollgate stand-in upstream (mock-llm). Configure TOLLGATE_MODELS_FILE to serve real models.';
  const usage = { prompt_tokens: 12, completion_tokens: 21, total_tokens: 33 };
  return {
    streaming: { chunkSize: 12, chunkIntervalMs: 10 },
    rules: [
      chatCompletionRule(answer, usage),
      {
        path: '/v1/completions',
        method: 'POST',
        match: '@',
        response: {
          status: 200,
          content: `{"id":"cmpl-{{timestamp}}","object":"text_completion","created":1700000000,"model":"{{jmes request body.model}}","choices":[{"index":0,"text":"${answer}","message":{"content":"${answer}"},"finish_reason":"stop"}],"usage":${JSON.stringify(usage)}}`,
        },
      },
      {
        path: '/v1/embeddings',
        method: 'POST',
        match: '@',
        response: {
          status: 200,
          content: `{"object":"list","model":"{{jmes request body.model}}","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2,0.3]}],"usage":{"prompt_tokens":5,"total_tokens":5}}`,
        },
      },
    ],
  };
}
