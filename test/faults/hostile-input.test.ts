import { connect } from 'node:net';
import fc from 'fast-check';
import { Pool } from 'undici';
import { systemMetadata } from '../../src/command-metadata';
import { startTestGateway, type TestGateway } from '../support/gateway';
import { defaultMockLlmConfig, startMockLlm, type MockLlm } from '../support/mock-llm';
import { accountEvents, accountState, addModel, eventsOfType, issueKey, openAccount, openAiClient } from '../support/e2e-setup';

/**
 * Hostile input: 10,000 generated requests (fast-check, fixed seed) that are each wrong in at
 * least one way a client or an attacker can be: wrong types, missing fields, bodies beyond the
 * configured limit, deep nesting, invalid UTF-8, negative or enormous max_tokens, unknown
 * models, bad or revoked keys, hostile headers. Every one must be answered 4xx in OpenAI's
 * error shape, none may reserve or charge anything, and the gateway must still serve after.
 */

const MODEL = 'llama';
const BODY_LIMIT = 64 * 1024;
const REQUESTS = 10_000;
const SEED = Number(process.env.TOLLGATE_HOSTILE_SEED ?? 20261122);
// Put in every prompt: no error message may quote it.
const MARKER = 'PROMPT-MARKER-7f3a';

let upstream: MockLlm;
let tg: TestGateway;
let accountId: string;
let goodKey: string;
let revokedKey: string;

beforeAll(async () => {
  upstream = await startMockLlm(defaultMockLlmConfig());
  tg = await startTestGateway({
    models: [{ id: MODEL, upstreams: [{ baseUrl: upstream.baseUrl, capacity: 64 }], maxOutputTokens: 256, operations: ['chat', 'completion', 'embedding'] }],
    env: { TOLLGATE_MAX_BODY_BYTES: String(BODY_LIMIT), LOG_LEVEL: 'warn' },
  });
  const { ledger, keys } = tg.gateway;
  await addModel(ledger, MODEL, { chat: { input: '1', output: '2' }, completion: { input: '1', output: '2' }, embedding: { input: '1', output: '0' } }, 256);
  accountId = await openAccount(ledger, { topUpUsd: '10' });
  goodKey = (await issueKey(keys, accountId)).secret;
  const revoked = await issueKey(keys, accountId);
  revokedKey = revoked.secret;
  expect((await keys.revoke(revoked.keyId, 'test', systemMetadata('test'))).ok).toBe(true);
}, 30_000);

afterAll(async () => {
  await tg?.stop();
  await upstream?.stop();
});

interface HostileRequest {
  readonly kind: string;
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body: string | Buffer;
}

const validChat = () => ({ model: MODEL, messages: [{ role: 'user', content: `hello ${MARKER}` }], max_tokens: 16 });

const anyJson = fc.oneof(
  fc.string(),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.string(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.string(), { maxKeys: 3 }),
);
const notA = (type: 'string' | 'number' | 'boolean' | 'array' | 'object') =>
  anyJson.filter((v) => {
    if (v === null) return false; // null is "unset" for every optional parameter
    if (type === 'array') return !Array.isArray(v);
    if (type === 'object') return typeof v !== 'object' || Array.isArray(v);
    if (type === 'number') return typeof v !== 'number';
    return typeof v !== type;
  });

/** A chat body with one field of the wrong type. */
const wrongType = fc.oneof(
  notA('string').map((model) => ({ ...validChat(), model })),
  notA('array').map((messages) => ({ ...validChat(), messages })),
  fc
    .oneof(
      fc.string().filter((r) => !['system', 'user', 'assistant', 'tool', 'developer'].includes(r)),
      fc.integer(),
    )
    .map((role) => ({
      ...validChat(),
      messages: [{ role, content: MARKER }],
    })),
  fc.oneof(fc.integer(), fc.boolean(), fc.dictionary(fc.string({ maxLength: 4 }), fc.integer(), { maxKeys: 2 })).map((content) => ({
    ...validChat(),
    messages: [{ role: 'user', content }],
  })),
  notA('boolean').map((stream) => ({ ...validChat(), stream })),
  fc
    .oneof(fc.double({ min: 2.01, max: 1e9, noNaN: true }), fc.double({ min: -1e9, max: -0.01, noNaN: true }), fc.string())
    .map((temperature) => ({ ...validChat(), temperature })),
  fc.integer({ min: 2, max: 1_000 }).map((n) => ({ ...validChat(), n })),
  fc.constant({ ...validChat(), stream_options: { include_usage: true } }),
  fc.constant({ ...validChat(), messages: [] }),
);

/** A body with a required field missing. */
const missingField = fc.oneof(
  fc.constant({ messages: validChat().messages }),
  fc.constant({ model: MODEL }),
  fc.constant({ model: MODEL, messages: [{ content: MARKER }] }),
  fc.constant({ model: MODEL, messages: [{ role: 'user' }] }),
  fc.constant({ model: MODEL, messages: [{ role: 'tool', content: MARKER }] }),
  fc.constant({}),
);

const badMaxTokens = fc
  .oneof(
    fc.integer({ min: -1_000_000, max: 0 }),
    fc.integer({ min: 257, max: Number.MAX_SAFE_INTEGER }),
    fc.constantFrom(1e300, 2 ** 53, 2 ** 64, -1e300, 1.5, 0.000001),
    fc.string(),
  )
  .chain((maxTokens) => fc.constantFrom({ ...validChat(), max_tokens: maxTokens }, { ...validChat(), max_completion_tokens: maxTokens }));

const unknownModel = fc
  .string({ minLength: 1, maxLength: 200 })
  .filter((m) => m !== MODEL)
  .map((model) => ({ ...validChat(), model }));

const nest = (depth: number, leaf: unknown): unknown => {
  let value = leaf;
  for (let i = 0; i < depth; i++) value = i % 2 === 0 ? [value] : { a: value };
  return value;
};
// Built as text: JSON.stringify itself would overflow on the deepest.
const deepText = (depth: number) => '['.repeat(depth) + ']'.repeat(depth);
const deepNesting = fc.oneof(
  fc.integer({ min: 65, max: 2_000 }).map((depth) => ({ ...validChat(), metadata: nest(depth, MARKER) })),
  fc.integer({ min: 65, max: 5_000 }).map((depth) => `{"model":"${MODEL}","messages":${deepText(depth)}}`),
  fc.integer({ min: 65, max: 5_000 }).map((depth) => `{"model":"${MODEL}","messages":[{"role":"user","content":"${MARKER}"}],"x":${deepText(depth)}}`),
);

const badUtf8Sequences = [[0xff], [0xc3, 0x28], [0xed, 0xa0, 0x80], [0xc0, 0xaf], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xe2, 0x82]];
const invalidUtf8 = fc.tuple(fc.constantFrom(...badUtf8Sequences), fc.nat({ max: 20 })).map(([bytes, at]) => {
  const text = `${MARKER} some words to cut into`;
  const cut = at % text.length;
  return Buffer.concat([
    Buffer.from(`{"model":"${MODEL}","messages":[{"role":"user","content":"${text.slice(0, cut)}`),
    Buffer.from(bytes),
    Buffer.from(`${text.slice(cut)}"}],"max_tokens":16}`),
  ]);
});

const hugeBody = fc
  .integer({ min: BODY_LIMIT + 1, max: 2 * BODY_LIMIT })
  .map((size) => ({ ...validChat(), messages: [{ role: 'user', content: MARKER + 'x'.repeat(size) }] }));

const notJson = fc.oneof(
  fc.string(),
  fc.constantFrom('', 'null', '[]', '"text"', '42', '{', '{"model":', 'true', '{"model":"llama","messages":[{"role":"user","content":"hi"}]'),
);

/** Completions and embeddings bodies, each wrong somehow. */
const otherEndpoints = fc.oneof(
  fc
    .record({ model: fc.constant(MODEL), prompt: fc.oneof(fc.constant([]), fc.integer(), fc.constant([[]]), fc.constant([-1]), fc.constant(null)) })
    .map((body) => ({ path: '/v1/completions', body })),
  fc.record({ model: fc.constant(MODEL), prompt: fc.constant(MARKER), n: fc.integer({ min: 2, max: 9 }) }).map((body) => ({ path: '/v1/completions', body })),
  fc
    .record({ model: fc.constant(MODEL), input: fc.oneof(fc.constant(''), fc.constant([]), fc.integer(), fc.constant([['a']]), fc.constant(null)) })
    .map((body) => ({ path: '/v1/embeddings', body })),
  fc
    .record({ model: fc.constant(MODEL), input: fc.constant(MARKER), dimensions: fc.integer({ min: -5, max: 0 }) })
    .map((body) => ({ path: '/v1/embeddings', body })),
);

type Body = { path?: string; body: unknown };
const asBody = (arb: fc.Arbitrary<unknown>): fc.Arbitrary<Body> => arb.map((body) => ({ body }));

const bodies: fc.Arbitrary<{ kind: string } & Body> = fc.oneof(
  { weight: 3, arbitrary: asBody(wrongType).map((b) => ({ kind: 'wrong_type', ...b })) },
  { weight: 2, arbitrary: asBody(missingField).map((b) => ({ kind: 'missing_field', ...b })) },
  { weight: 2, arbitrary: asBody(badMaxTokens).map((b) => ({ kind: 'bad_max_tokens', ...b })) },
  { weight: 2, arbitrary: asBody(unknownModel).map((b) => ({ kind: 'unknown_model', ...b })) },
  { weight: 1, arbitrary: asBody(deepNesting).map((b) => ({ kind: 'deep_nesting', ...b })) },
  { weight: 1, arbitrary: asBody(invalidUtf8).map((b) => ({ kind: 'invalid_utf8', ...b })) },
  { weight: 1, arbitrary: asBody(hugeBody).map((b) => ({ kind: 'huge_body', ...b })) },
  { weight: 1, arbitrary: asBody(notJson).map((b) => ({ kind: 'not_json', ...b })) },
  { weight: 1, arbitrary: otherEndpoints.map((b) => ({ kind: 'other_endpoint', ...b })) },
);

const printable = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 300 });

/** Who the request claims to be: mostly the good key, so bodies reach validation. */
const authorization = (): fc.Arbitrary<{ header: string | undefined; valid: boolean; kind: string }> =>
  fc.oneof(
    { weight: 12, arbitrary: fc.constant({ header: `Bearer ${goodKey}`, valid: true, kind: '' }) },
    { weight: 1, arbitrary: fc.constant({ header: undefined, valid: false, kind: 'no_key' }) },
    { weight: 1, arbitrary: fc.constant({ header: `Bearer ${revokedKey}`, valid: false, kind: 'revoked_key' }) },
    { weight: 1, arbitrary: printable.map((junk) => ({ header: `Bearer ${junk}`, valid: false, kind: 'malformed_key' })) },
    {
      weight: 1,
      arbitrary: fc
        .constantFrom(
          `Bearer ${goodKey} x`,
          `Basic ${Buffer.from(goodKey).toString('base64')}`,
          `${goodKey}`,
          `Bearer ${goodKey.slice(0, -1)}A`,
          `Bearer ${goodKey}, Bearer ${revokedKey}`,
        )
        .map((header) => ({ header, valid: false, kind: 'header_injection' })),
    },
  );

/** Headers a hostile client adds; none of them may make an invalid request succeed. */
const extraHeaders = fc.record(
  {
    'x-request-id': printable,
    'content-type': fc.constantFrom(
      'application/json',
      'application/json; charset=utf-8',
      'text/plain',
      'application/json; charset=latin1',
      'application/x-www-form-urlencoded',
      'application/json; charset=utf-7',
    ),
    'content-encoding': fc.constantFrom('gzip', 'br', 'compress', 'identity'),
    'x-forwarded-for': printable,
    'openai-organization': printable,
  },
  { requiredKeys: [] },
);

function hostileRequests(): HostileRequest[] {
  const arbitrary = fc.tuple(
    bodies,
    authorization(),
    extraHeaders,
    fc.constantFrom('/v1/chat/completions', '/v1/chat/completions', '/v1/completions', '/v1/embeddings'),
  );
  return fc.sample(arbitrary, { numRuns: REQUESTS, seed: SEED }).map(([body, auth, extra, defaultPath]) => {
    const headers: Record<string, string> = { 'content-type': 'application/json', ...extra };
    if (auth.header !== undefined) headers.authorization = auth.header;
    const raw = Buffer.isBuffer(body.body) ? body.body : typeof body.body === 'string' ? body.body : JSON.stringify(body.body);
    // With a valid key, a body must be wrong for the endpoint it goes to: chat bodies go to chat.
    const path =
      body.path ??
      (body.kind === 'not_json' || body.kind === 'deep_nesting' || body.kind === 'invalid_utf8' || body.kind === 'huge_body'
        ? defaultPath
        : '/v1/chat/completions');
    const kind = [
      body.kind,
      auth.kind,
      extra['content-type'] && extra['content-type'] !== 'application/json' ? 'content_type' : '',
      extra['content-encoding'] ? 'content_encoding' : '',
    ]
      .filter(Boolean)
      .join('+');
    return { kind, path, headers, body: raw };
  });
}

interface Answer {
  status: number;
  contentType: string | undefined;
  text: string;
}

function hasOpenAiErrorShape(text: string): boolean {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return false;
  }
  if (typeof body !== 'object' || body === null || !('error' in body)) return false;
  const error = (body as { error: Record<string, unknown> }).error;
  return (
    typeof error === 'object' &&
    error !== null &&
    typeof error.message === 'string' &&
    typeof error.type === 'string' &&
    'param' in error &&
    (error.param === null || typeof error.param === 'string') &&
    'code' in error &&
    (error.code === null || typeof error.code === 'string')
  );
}

it(`answers ${REQUESTS.toLocaleString('en-US')} hostile requests with 4xx in OpenAI's shape, reserving nothing`, async () => {
  const before = await accountState(tg.gateway.ledger, accountId);
  const requests = hostileRequests();
  expect(requests).toHaveLength(REQUESTS);
  const started = performance.now();
  const pool = new Pool(tg.url, { connections: 32, pipelining: 1 });
  const answers: Answer[] = new Array(requests.length);
  const failures: string[] = [];
  let next = 0;
  const worker = async () => {
    while (next < requests.length) {
      const i = next++;
      const request = requests[i]!;
      try {
        const response = await pool.request({ method: 'POST', path: request.path, headers: request.headers, body: request.body });
        const text = await response.body.text();
        answers[i] = { status: response.statusCode, contentType: response.headers['content-type'] as string | undefined, text };
      } catch (error) {
        failures.push(`${request.kind}: ${(error as Error).name} ${(error as { code?: string }).code ?? ''}`);
        answers[i] = { status: 0, contentType: undefined, text: '' };
      }
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  await pool.close();
  const seconds = (performance.now() - started) / 1_000;

  const byStatus = new Map<number, number>();
  const byKind = new Map<string, number>();
  const wrong: string[] = [];
  answers.forEach((answer, i) => {
    byStatus.set(answer.status, (byStatus.get(answer.status) ?? 0) + 1);
    const kind = requests[i]!.kind.split('+')[0]!;
    byKind.set(kind, (byKind.get(kind) ?? 0) + 1);
    const ok =
      answer.status >= 400 &&
      answer.status < 500 &&
      /^application\/json/.test(answer.contentType ?? '') &&
      hasOpenAiErrorShape(answer.text) &&
      !answer.text.includes(MARKER);
    if (!ok && wrong.length < 20) wrong.push(`${requests[i]!.kind} ${requests[i]!.path} -> ${answer.status} ${answer.text.slice(0, 200)}`);
  });
  process.stdout.write(
    `hostile input: ${requests.length} requests (seed ${SEED}) in ${seconds.toFixed(1)} s; by status ${JSON.stringify(Object.fromEntries(byStatus))}; by kind ${JSON.stringify(Object.fromEntries(byKind))}\n`,
  );
  expect(failures.slice(0, 10)).toEqual([]);
  expect(wrong).toEqual([]);
  // Every family of hostile input was exercised, not just the first few.
  for (const kind of [
    'wrong_type',
    'missing_field',
    'bad_max_tokens',
    'unknown_model',
    'deep_nesting',
    'invalid_utf8',
    'huge_body',
    'not_json',
    'other_endpoint',
  ]) {
    expect(byKind.get(kind) ?? 0).toBeGreaterThan(100);
  }
  // How long it took is printed above, not judged: a verdict must not depend on the machine.

  // Nothing was reserved or charged: the account's log holds only its opening and top-up.
  const events = await accountEvents(tg.gateway.ledger, accountId);
  expect(eventsOfType(events, 'ReservationPlaced')).toEqual([]);
  expect(events.map((e) => e.type)).toEqual(['AccountOpened', 'TopUpCompleted']);
  const after = await accountState(tg.gateway.ledger, accountId);
  expect(after.purchased).toBe(before.purchased);
  expect(after.reserved).toBe(0n);

  // And the gateway still serves: health, readiness, and a real request through the SDK.
  expect((await fetch(`${tg.url}/healthz`)).status).toBe(200);
  expect((await fetch(`${tg.url}/readyz`)).status).toBe(200);
  const reply = await openAiClient(tg.url, goodKey).chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'still there?' }] });
  expect(reply.choices[0]!.message.content).toBe('still there?');
}, 120_000);

/** Raw bytes Node's HTTP parser refuses (CR/LF injected into headers, bad request lines). */
const malformedHttp = [
  `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer KEY\r\nX-Injected: a\rb\r\ncontent-length: 2\r\n\r\n{}`,
  `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Request-Id: a\nSet-Cookie: evil=1\r\ncontent-length: 2\r\n\r\n{}`,
  `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer KEY\0\r\ncontent-length: 2\r\n\r\n{}`,
  `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}`,
  `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-length: -1\r\n\r\n{}`,
  `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 2\r\n\r\n{}`,
  `POST /v1/chat/completions\r\nHost: x\r\n\r\n`,
  `POST /v1/chat completions HTTP/1.1\r\nHost: x\r\n\r\n`,
  `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
  `GARBAGE\r\n\r\n`,
];

it('answers malformed HTTP (header injection, bad framing) with 4xx in OpenAI shape, and stays up', async () => {
  const { port } = new URL(tg.url);
  for (const raw of malformedHttp) {
    const text = await new Promise<string>((resolve, reject) => {
      const socket = connect(Number(port), '127.0.0.1');
      let received = '';
      socket.on('data', (chunk) => (received += chunk.toString('latin1')));
      socket.on('end', () => resolve(received));
      socket.on('close', () => resolve(received));
      socket.on('error', reject);
      socket.write(raw.replaceAll('KEY', goodKey));
    });
    const [head, body] = [text.slice(0, text.indexOf('\r\n\r\n')), text.slice(text.indexOf('\r\n\r\n') + 4)];
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]);
    expect({ raw: raw.slice(0, 60), status: status >= 400 && status < 500, shape: hasOpenAiErrorShape(body), cookie: /set-cookie/i.test(head) }).toEqual({
      raw: raw.slice(0, 60),
      status: true,
      shape: true,
      cookie: false,
    });
  }
  const events = await accountEvents(tg.gateway.ledger, accountId);
  expect(eventsOfType(events, 'ReservationPlaced')).toHaveLength(1); // the one real request above
  expect((await fetch(`${tg.url}/healthz`)).status).toBe(200);
});
