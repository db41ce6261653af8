import { createServer } from 'node:net';
import { stringify } from 'yaml';
import { chatCompletionRule, launchMockLlm } from '../../adapters/inference/mock-llm-process';

/**
 * Runs @dwmkerr/mock-llm as a real process on a free loopback port, for tests that need an
 * OpenAI-compatible upstream. Rules match on the requested model (JMESPath on body.model).
 */

export interface MockLlm {
  /** Includes /v1, as a models file's upstream baseUrl does. */
  readonly baseUrl: string;
  readonly port: number;
  /** Replaces the rules of the running server (POST /config). */
  setConfig(config: object | string): Promise<void>;
  /** Restores the config it started with and resets sequence counters. */
  resetConfig(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * `readyTimeoutMs`: how long each start may take, a safety net only: generous, because on two
 * cores shared with the rest of the suite starting node and mock-llm took more than the former
 * 10 s (three tries of it failed whole fault files with nothing wrong).
 */
export async function startMockLlm(config: object | string = defaultMockLlmConfig(), readyTimeoutMs = 60_000): Promise<MockLlm> {
  // A free port can be taken between probing and listening: try a few.
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    let process;
    try {
      process = await launchMockLlm(config, port, readyTimeoutMs);
    } catch (error) {
      if (attempt < 2) continue;
      throw error;
    }
    const { origin } = process;
    return {
      baseUrl: process.baseUrl,
      port,
      async setConfig(next) {
        const yamlText = typeof next === 'string' ? next : stringify(next);
        const response = await fetch(`${origin}/config`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-yaml' },
          body: yamlText,
        });
        if (!response.ok) throw new Error(`mock-llm refused the config: HTTP ${response.status}`);
      },
      async resetConfig() {
        const response = await fetch(`${origin}/config`, { method: 'DELETE' });
        if (!response.ok) throw new Error(`mock-llm refused the reset: HTTP ${response.status}`);
      },
      stop: () => process.stop(),
    };
  }
}

/** A loopback port nothing listens on (at the moment of asking). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Fixed usage the default chat rule reports, so tests can tell reported from counted. */
export const mockChatUsage = { prompt_tokens: 11, completion_tokens: 7, total_tokens: 18 } as const;
export const mockEmbeddingUsage = { prompt_tokens: 5, total_tokens: 5 } as const;

export interface MockLlmConfigOptions {
  /** Characters per streamed chunk. */
  chunkSize?: number;
  /** Pause between streamed chunks; make it large to abort mid-stream. */
  chunkIntervalMs?: number;
}

/**
 * Rules by requested model (last match wins):
 * - any model: chat echoes the last user message, with usage (mockChatUsage);
 * - "failing": chat and completions answer 500 with a body that echoes the prompt (so tests
 *   can prove it is not forwarded);
 * - "moderated": chat finishes with finish_reason "content_filter";
 * - completions echo the prompt (a `message` is added because mock-llm streams from it);
 * - embeddings (mock-llm has no embeddings of its own): a fixed 3-dimensional vector.
 */
export function defaultMockLlmConfig(options: MockLlmConfigOptions = {}): object {
  return {
    streaming: { chunkSize: options.chunkSize ?? 8, chunkIntervalMs: options.chunkIntervalMs ?? 5 },
    rules: [
      chatCompletionRule('{{jmes request body.messages[-1].content}}', mockChatUsage),
      {
        path: '/v1/chat/completions',
        method: 'POST',
        match: "body.model == 'moderated'",
        response: {
          status: 200,
          content: `{"id":"chatcmpl-{{timestamp}}","object":"chat.completion","created":1700000000,"model":"moderated","choices":[{"index":0,"message":{"role":"assistant","content":""},"finish_reason":"content_filter"}],"usage":{"prompt_tokens":9,"completion_tokens":0,"total_tokens":9}}`,
        },
      },
      {
        path: '/v1/chat/completions',
        method: 'POST',
        match: "body.model == 'failing'",
        response: {
          status: 500,
          content: `{"error":{"message":"internal failure while processing {{jmes request body.messages[-1].content}}","type":"server_error","param":null,"code":null}}`,
        },
      },
      {
        path: '/v1/completions',
        method: 'POST',
        match: '@',
        response: {
          status: 200,
          content: `{"id":"cmpl-{{timestamp}}","object":"text_completion","created":1700000000,"model":"{{jmes request body.model}}","choices":[{"index":0,"text":"{{jmes request body.prompt}}","message":{"content":"{{jmes request body.prompt}}"},"finish_reason":"stop"}]}`,
        },
      },
      {
        path: '/v1/completions',
        method: 'POST',
        match: "body.model == 'failing'",
        response: {
          status: 500,
          content: `{"error":{"message":"internal failure while processing {{jmes request body.prompt}}","type":"server_error","param":null,"code":null}}`,
        },
      },
      {
        path: '/v1/embeddings',
        method: 'POST',
        match: '@',
        response: {
          status: 200,
          content: `{"object":"list","model":"{{jmes request body.model}}","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2,0.3]}],"usage":${JSON.stringify(mockEmbeddingUsage)}}`,
        },
      },
    ],
  };
}

/** mock-llm's streams, slowed so a test can abort in the middle. */
export function slowStreamMockLlmConfig(chunkIntervalMs = 150): object {
  return defaultMockLlmConfig({ chunkSize: 4, chunkIntervalMs });
}
