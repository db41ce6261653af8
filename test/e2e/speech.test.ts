import { mkdtempSync, createReadStream, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseBuffer } from 'music-metadata';
import OpenAI from 'openai';
import { estimateReservation } from '../../domain/estimate';
import { requestCost, type MicroUsd } from '../../domain/money';
import { PRICE_BOOK_STREAM_ID, type Operation } from '../../domain/price-book';
import { adminMetadata, systemMetadata } from '../../src/command-metadata';
import { exportAccount } from '../../src/compliance/export';
import type { Ledger } from '../../src/ledger';
import {
  accountEvents,
  dumpDatabase,
  eventsOfType,
  issueKey,
  openAccount,
  openAiClient,
  rejectionOf,
  requestEvents,
  requestLogEntry,
} from '../support/e2e-setup';
import { startTestGateway, type TestGateway } from '../support/gateway';
import { espeakAvailable, espeakWav, startSpeechServer, TRANSCRIPT, wavDurationSeconds, withWavTitle, type SpeechServer } from '../support/speech-server';
import { until } from '../support/wait';
import { AUDIO_TOKENS_PER_SECOND } from '../../src/inference/serve-audio';

/**
 * The speech routes end to end: the official openai client, the real gateway, a real
 * OpenAI-compatible speech server (test/support/speech-server.ts) whose audio is espeak-ng's,
 * audio files of known duration made here, and the charges checked to the micro-USD.
 */

// A marker spoken into the test audio, written into its metadata and sent as `prompt`: it must
// reach the upstream and appear in no event, log line or table.
const CANARY = 'CANARY-speech-7f3a91c2';
const MAX_AUDIO_BYTES = 200_000;
const whisperPrice = { inputPerMillion: 2_500_001n, outputPerMillion: 10_000_003n, perAudioSecond: 101n };
const translatePrice = { inputPerMillion: 0n, outputPerMillion: 0n, perAudioSecond: 153n };
const ttsPrice = { inputPerMillion: 0n, outputPerMillion: 0n, perMillionCharacters: 15_000_007n };
/** gpt-4o-transcribe style: priced by the token only */
const tokenPrice = { inputPerMillion: 6_000_001n, outputPerMillion: 10_000_003n };

let server: SpeechServer;
let gw: TestGateway;
let dir: string;
let speechFile: string;
let speechWav: Buffer;

beforeAll(async () => {
  if (!espeakAvailable()) throw new Error('espeak-ng is not installed (Debian package espeak-ng; .ci/run installs it)');
  dir = mkdtempSync(join(tmpdir(), 'tollgate-speech-'));
  speechWav = withWavTitle(espeakWav(`the quick brown fox ${CANARY}`), CANARY);
  speechFile = join(dir, 'speech.wav');
  writeFileSync(speechFile, speechWav);
  server = await startSpeechServer({ heldAfterBytes: 8_192 });
  const model = (id: string, operations: Operation[], extra: Record<string, number> = {}) => ({
    id,
    upstreams: [{ baseUrl: server.baseUrl, capacity: 4 }],
    maxOutputTokens: 256,
    operations,
    ...extra,
  });
  gw = await startTestGateway({
    models: [
      model('whisper', ['transcription', 'translation'], { maxAudioSeconds: 60 }),
      model('whisper-short', ['transcription'], { maxAudioSeconds: 1 }),
      model('tts', ['speech'], { maxInputCharacters: 200 }),
      model('held-tts', ['speech']),
      model('fail-whisper', ['transcription']),
      model('cut-whisper', ['transcription']),
      model('fail-tts', ['speech']),
      model('cut-tts', ['speech']),
      model('cut-tts-nolength', ['speech']),
      model('held-tts-nolength', ['speech']),
      model('held-whisper', ['transcription']),
      model('whisper-tokens', ['transcription']),
      model('held-whisper-tokens', ['transcription']),
    ],
    env: { TOLLGATE_MAX_AUDIO_BYTES: String(MAX_AUDIO_BYTES) },
  });
  const ledger = gw.gateway.ledger;
  await priceModel(ledger, 'whisper', { transcription: whisperPrice, translation: translatePrice });
  await priceModel(ledger, 'whisper-short', { transcription: whisperPrice });
  await priceModel(ledger, 'tts', { speech: ttsPrice });
  await priceModel(ledger, 'held-tts', { speech: ttsPrice });
  await priceModel(ledger, 'fail-whisper', { transcription: whisperPrice });
  await priceModel(ledger, 'cut-whisper', { transcription: whisperPrice });
  for (const id of ['fail-tts', 'cut-tts', 'cut-tts-nolength', 'held-tts-nolength']) await priceModel(ledger, id, { speech: ttsPrice });
  await priceModel(ledger, 'held-whisper', { transcription: whisperPrice });
  await priceModel(ledger, 'whisper-tokens', { transcription: tokenPrice });
  await priceModel(ledger, 'held-whisper-tokens', { transcription: tokenPrice });
});

afterAll(async () => {
  await gw?.stop();
  await server?.stop();
});

async function priceModel(
  ledger: Ledger,
  modelId: string,
  prices: Partial<Record<Operation, typeof ttsPrice | typeof whisperPrice | typeof tokenPrice>>,
): Promise<void> {
  const operations = Object.keys(prices) as Operation[];
  const added = await ledger.priceBook.handle(PRICE_BOOK_STREAM_ID, {
    type: 'AddModel',
    data: { modelId, operations, maxOutputTokens: 256n },
    metadata: systemMetadata('test'),
  });
  expect(added.ok).toBe(true);
  for (const operation of operations) {
    const set = await ledger.priceBook.handle(PRICE_BOOK_STREAM_ID, {
      type: 'SetPrice',
      data: { modelId, operation, ...prices[operation]! },
      metadata: systemMetadata('test'),
    });
    expect(set.ok).toBe(true);
  }
}

async function customer(): Promise<{ accountId: string; client: OpenAI; secret: string }> {
  const accountId = await openAccount(gw.gateway.ledger, { topUpUsd: '10' });
  const { secret } = await issueKey(gw.gateway.keys, accountId);
  return { accountId, client: openAiClient(gw.url, secret), secret };
}

async function released(accountId: string) {
  return until(
    async () => {
      const events = eventsOfType(await accountEvents(gw.gateway.ledger, accountId), 'ReservationReleased');
      return events.length === 0 ? undefined : events;
    },
    { what: 'the release' },
  );
}

async function settled(accountId: string) {
  return until(
    async () => {
      const events = eventsOfType(await accountEvents(gw.gateway.ledger, accountId), 'ReservationSettled');
      return events.length === 0 ? undefined : events;
    },
    { what: 'the settlement' },
  );
}

/** The file's duration from its own header (data bytes / byte rate), in milliseconds rounded up. */
function measuredMs(wav: Buffer): bigint {
  const { numerator, byteRate } = wavDurationSeconds(wav);
  return (BigInt(numerator) * 1_000n + BigInt(byteRate) - 1n) / BigInt(byteRate);
}

describe('POST /v1/audio/transcriptions', () => {
  it('transcribes a real file stream and charges the upstream-reported seconds at the per-second price', async () => {
    const { accountId, client } = await customer();
    const result = await client.audio.transcriptions.create({ file: createReadStream(speechFile), model: 'whisper', prompt: CANARY, response_format: 'json' });
    expect(result.text).toBe(TRANSCRIPT);
    // The upstream got the file whole and the prompt as sent.
    const forwarded = server.received.at(-1)!;
    expect(forwarded).toMatchObject({ path: '/v1/audio/transcriptions', fileBytes: speechWav.length, fields: { model: 'whisper', prompt: CANARY } });

    const [event] = await settled(accountId);
    const wholeSeconds = (measuredMs(speechWav) + 999n) / 1_000n;
    expect(event!.data.usage).toEqual({ inputTokens: 0n, outputTokens: 0n, estimated: false, audioMilliseconds: wholeSeconds * 1_000n });
    expect(event!.data.actualCost).toBe(wholeSeconds * 101n);
    expect(event!.data.operation).toBe('transcription');
  });

  it('charges the duration measured from the header, marked estimated, when the answer carries no usage (text)', async () => {
    const { accountId, client } = await customer();
    const text = await client.audio.transcriptions.create({ file: createReadStream(speechFile), model: 'whisper', response_format: 'text' });
    expect(text.trim()).toBe(TRANSCRIPT);
    const [event] = await settled(accountId);
    const ms = measuredMs(speechWav);
    expect(event!.data.usage).toEqual({ inputTokens: 0n, outputTokens: 0n, estimated: true, audioMilliseconds: ms });
    // 101 micro-USD a second, per millisecond, rounded up once.
    expect(event!.data.actualCost).toBe((ms * 101n + 999n) / 1_000n);
  });

  it('relays srt, vtt and verbose_json as the upstream wrote them', async () => {
    const { client } = await customer();
    const srt = await client.audio.transcriptions.create({ file: createReadStream(speechFile), model: 'whisper', response_format: 'srt' });
    expect(srt).toMatch(/^1\n00:00:00,000 --> 00:00:0\d,\d{3}\nthe quick brown fox/);
    const vtt = await client.audio.transcriptions.create({ file: createReadStream(speechFile), model: 'whisper', response_format: 'vtt' });
    expect(vtt).toMatch(/^WEBVTT\n\n00:00:00\.000 --> /);
    const verbose = await client.audio.transcriptions.create({ file: createReadStream(speechFile), model: 'whisper', response_format: 'verbose_json' });
    expect(verbose.text).toBe(TRANSCRIPT);
    expect(verbose.segments?.[0]?.text).toBe(TRANSCRIPT);
  });

  it('streams transcript events and settles on the tokens the upstream reports, at token prices', async () => {
    const { accountId, client } = await customer();
    const stream = await client.audio.transcriptions.create({ file: createReadStream(speechFile), model: 'whisper', stream: true });
    const types: string[] = [];
    let done = '';
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === 'transcript.text.done') done = event.text;
    }
    expect(types).toEqual(['transcript.text.delta', 'transcript.text.delta', 'transcript.text.delta', 'transcript.text.delta', 'transcript.text.done']);
    expect(done).toBe(TRANSCRIPT);
    const [event] = await settled(accountId);
    expect(event!.data.usage).toEqual({ inputTokens: 120n, outputTokens: 9n, estimated: false });
    expect(event!.data.actualCost).toBe(requestCost({ inputTokens: 120n, outputTokens: 9n }, whisperPrice));
    expect(event!.data.actualCost).toBe((120n * 2_500_001n + 9n * 10_000_003n + 999_999n) / 1_000_000n);
  });

  it('answers an upload over the limit with 413 in OpenAI shape, with nothing reserved', async () => {
    const { accountId, client } = await customer();
    const big = espeakWav('a long sentence spoken slowly enough to make a file larger than the limit. '.repeat(3));
    expect(big.length).toBeGreaterThan(MAX_AUDIO_BYTES);
    const file = join(dir, 'big.wav');
    writeFileSync(file, big);
    const error = await rejectionOf(client.audio.transcriptions.create({ file: createReadStream(file), model: 'whisper' }));
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect((error as InstanceType<typeof OpenAI.APIError>).status).toBe(413);
    expect((error as InstanceType<typeof OpenAI.APIError>).error).toEqual({
      message: expect.stringContaining(`${MAX_AUDIO_BYTES} bytes`),
      type: 'invalid_request_error',
      param: 'file',
      code: 'request_too_large',
    });
    expect(requestEvents(await accountEvents(gw.gateway.ledger, accountId))).toEqual([]);
  });

  it('answers a file that is not audio with 400, with nothing reserved', async () => {
    const { accountId, client } = await customer();
    const file = join(dir, 'not-audio.wav');
    writeFileSync(file, Buffer.from('this is plain text pretending to be audio, and no header at all\n'.repeat(20)));
    const error = (await rejectionOf(client.audio.transcriptions.create({ file: createReadStream(file), model: 'whisper' }))) as InstanceType<
      typeof OpenAI.APIError
    >;
    expect(error.status).toBe(400);
    expect(error.error).toMatchObject({ type: 'invalid_request_error', param: 'file', code: 'invalid_value' });
    expect(requestEvents(await accountEvents(gw.gateway.ledger, accountId))).toEqual([]);
  });

  it("refuses audio longer than the model's maximum duration, with nothing reserved", async () => {
    const { accountId, client } = await customer();
    const error = (await rejectionOf(client.audio.transcriptions.create({ file: createReadStream(speechFile), model: 'whisper-short' }))) as InstanceType<
      typeof OpenAI.APIError
    >;
    expect(error.status).toBe(400);
    expect(error.message).toContain('at most 1 seconds');
    expect(requestEvents(await accountEvents(gw.gateway.ledger, accountId))).toEqual([]);
  });
});

describe('POST /v1/audio/translations', () => {
  it('translates a real file and charges its seconds at the translation price', async () => {
    const { accountId, client } = await customer();
    const result = await client.audio.translations.create({ file: createReadStream(speechFile), model: 'whisper', prompt: CANARY });
    expect(result.text).toBe(TRANSCRIPT);
    expect(server.received.at(-1)!.path).toBe('/v1/audio/translations');
    const [event] = await settled(accountId);
    const wholeSeconds = (measuredMs(speechWav) + 999n) / 1_000n;
    expect(event!.data.operation).toBe('translation');
    expect(event!.data.actualCost).toBe(wholeSeconds * 153n);
  });
});

describe('POST /v1/audio/speech', () => {
  const input = 'Tollgate speaks real audio, billed by the character.';

  it("streams espeak-ng's audio back and charges the input's characters at the per-million price", async () => {
    const { accountId, client } = await customer();
    const response = await client.audio.speech.create({ model: 'tts', voice: 'alloy', input, response_format: 'wav' });
    expect(response.headers.get('content-type')).toBe('audio/wav');
    const audio = Buffer.from(await response.arrayBuffer());
    expect(audio.subarray(0, 4).toString('latin1')).toBe('RIFF');
    const metadata = await parseBuffer(audio, { mimeType: 'audio/wav' }, { duration: true });
    expect(metadata.format.duration).toBeGreaterThan(1);

    const [event] = await settled(accountId);
    const characters = BigInt(input.length);
    expect(event!.data.usage).toEqual({ inputTokens: 0n, outputTokens: 0n, estimated: true, inputCharacters: characters });
    expect(event!.data.actualCost).toBe((characters * 15_000_007n + 999_999n) / 1_000_000n);
    // The request log's entry follows the settlement.
    const entry = await until(() => requestLogEntry(gw.gateway.ledger, accountId, event!.data.requestId, new Date().toISOString()), {
      what: 'the request log entry',
    });
    expect(entry?.operation).toBe('speech');
    expect(entry?.usage?.inputCharacters).toBe(characters);
  });

  it('refuses an input over the model limit with 400 and nothing reserved', async () => {
    const { accountId, client } = await customer();
    const error = (await rejectionOf(client.audio.speech.create({ model: 'tts', voice: 'alloy', input: 'x'.repeat(201) }))) as InstanceType<
      typeof OpenAI.APIError
    >;
    expect(error.status).toBe(400);
    expect(error.error).toMatchObject({ param: 'input', code: 'invalid_value' });
    expect(requestEvents(await accountEvents(gw.gateway.ledger, accountId))).toEqual([]);
  });

  it('charges a client that leaves mid-speech for the share of the audio produced, and cancels the upstream', async () => {
    const { accountId, client } = await customer();
    const abort = new AbortController();
    const response = await client.audio.speech.create({ model: 'held-tts', voice: 'alloy', input, response_format: 'wav' }, { signal: abort.signal });
    const reader = response.body!.getReader();
    let got = 0;
    while (got < 8_192) {
      const { value, done } = await reader.read();
      if (done) throw new Error('the held speech ended');
      got += value.length;
    }
    const held = server.speechHeld();
    abort.abort();
    const sent = await held; // the upstream saw its client (the gateway) go: cancelled
    expect(sent).toBe(8_192);
    const [event] = await settled(accountId);
    const total = BigInt(espeakWav(input).length);
    const characters = (BigInt(input.length) * 8_192n + total - 1n) / total;
    expect(event!.data.outcome).toBe('client_disconnected');
    expect(event!.data.usage).toEqual({ inputTokens: 0n, outputTokens: 0n, estimated: true, inputCharacters: characters });
    expect(event!.data.actualCost).toBe(requestCost({ inputTokens: 0n, outputTokens: 0n, inputCharacters: characters }, ttsPrice) as MicroUsd);
  });

  it('charges a client that leaves mid-speech for the whole input when the upstream declared no length', async () => {
    const { accountId, client } = await customer();
    const abort = new AbortController();
    const response = await client.audio.speech.create({ model: 'held-tts-nolength', voice: 'alloy', input, response_format: 'wav' }, { signal: abort.signal });
    const reader = response.body!.getReader();
    let got = 0;
    while (got < 8_192) {
      const { value, done } = await reader.read();
      if (done) throw new Error('the held speech ended');
      got += value.length;
    }
    const held = server.speechHeld();
    abort.abort();
    expect(await held).toBe(8_192);
    const [event] = await settled(accountId);
    expect(event!.data.outcome).toBe('client_disconnected');
    expect(event!.data.usage).toEqual({ inputTokens: 0n, outputTokens: 0n, estimated: true, inputCharacters: BigInt(input.length) });
  });
});

describe('upstream failures on the audio routes (the charge policy rows)', () => {
  const input = 'Tollgate speaks real audio, billed by the character.';

  it('an upstream HTTP 500 on a transcription: 502 in OpenAI shape, the reservation released, nothing charged', async () => {
    const { accountId, client } = await customer();
    const error = (await rejectionOf(client.audio.transcriptions.create({ file: createReadStream(speechFile), model: 'fail-whisper' }))) as InstanceType<
      typeof OpenAI.APIError
    >;
    expect(error.status).toBe(502);
    expect(error.error).toMatchObject({ type: 'upstream_error', code: 'upstream_error' });
    expect(error.message).not.toContain('engine crashed');
    const [release] = await released(accountId);
    expect(release!.data.reason).toBe('upstream_error_no_tokens');
    expect(eventsOfType(await accountEvents(gw.gateway.ledger, accountId), 'ReservationSettled')).toEqual([]);
  });

  it('a transcription answer cut mid-body: 502, released, nothing charged', async () => {
    const { accountId, client } = await customer();
    const error = (await rejectionOf(
      client.audio.transcriptions.create({ file: createReadStream(speechFile), model: 'cut-whisper' }, { maxRetries: 0 }),
    )) as InstanceType<typeof OpenAI.APIError>;
    expect(error.status).toBe(502);
    const [release] = await released(accountId);
    expect(release!.data.reason).toBe('upstream_error_no_tokens');
    expect(eventsOfType(await accountEvents(gw.gateway.ledger, accountId), 'ReservationSettled')).toEqual([]);
  });

  it('an upstream HTTP 500 on speech before any audio: 502, released, nothing charged', async () => {
    const { accountId, client } = await customer();
    const error = (await rejectionOf(client.audio.speech.create({ model: 'fail-tts', voice: 'alloy', input }, { maxRetries: 0 }))) as InstanceType<
      typeof OpenAI.APIError
    >;
    expect(error.status).toBe(502);
    const [release] = await released(accountId);
    expect(release!.data.reason).toBe('upstream_error_no_tokens');
  });

  it('speech cut by its upstream after some audio went out: the client sees a cut answer, and the share relayed is charged', async () => {
    const { accountId, client } = await customer();
    const response = await client.audio.speech.create({ model: 'cut-tts', voice: 'alloy', input, response_format: 'wav' }, { maxRetries: 0 });
    const reader = response.body!.getReader();
    let got = 0;
    let failed = false;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        got += value.length;
      }
    } catch {
      failed = true;
    }
    // The gateway resets its answer: the client cannot take the truncated audio for a whole one.
    expect(failed).toBe(true);
    expect(got).toBe(8_192);
    const [event] = await settled(accountId);
    const total = BigInt(espeakWav(input).length);
    const characters = (BigInt(input.length) * 8_192n + total - 1n) / total;
    expect(characters).toBeLessThan(BigInt(input.length));
    expect(event!.data.outcome).toBe('upstream_error');
    expect(event!.data.usage).toEqual({ inputTokens: 0n, outputTokens: 0n, estimated: true, inputCharacters: characters });
    expect(event!.data.actualCost).toBe(requestCost({ inputTokens: 0n, outputTokens: 0n, inputCharacters: characters }, ttsPrice) as MicroUsd);
  });

  it('speech cut by its upstream without a declared length: the share cannot be measured, so it is released', async () => {
    const { accountId, client } = await customer();
    const response = await client.audio.speech.create({ model: 'cut-tts-nolength', voice: 'alloy', input, response_format: 'wav' }, { maxRetries: 0 });
    await expect(response.arrayBuffer()).rejects.toThrow();
    const [release] = await released(accountId);
    expect(release!.data.reason).toBe('upstream_error_no_tokens');
    expect(eventsOfType(await accountEvents(gw.gateway.ledger, accountId), 'ReservationSettled')).toEqual([]);
  });
});

describe('the read side in audio units', () => {
  it('usage, the request list and /dashboard/pricing show audio seconds and characters', async () => {
    const accountId = await openAccount(gw.gateway.ledger, { topUpUsd: '10' });
    const { secret } = await issueKey(gw.gateway.keys, accountId, ['inference', 'account_read']);
    const client = openAiClient(gw.url, secret);
    await client.audio.transcriptions.create({ file: createReadStream(speechFile), model: 'whisper', response_format: 'text' });
    const input = 'Twenty-six characters, ok.';
    await (await client.audio.speech.create({ model: 'tts', voice: 'alloy', input })).arrayBuffer();
    await until(async () => ((await settled(accountId)).length === 2 ? true : undefined), { what: 'both settlements' });

    const get = async (path: string) => {
      const response = await fetch(`${gw.url}${path}`, { headers: { authorization: `Bearer ${secret}` } });
      expect(response.status).toBe(200);
      return response.json() as Promise<{ data: Record<string, unknown>[] }>;
    };
    const ms = measuredMs(speechWav);
    const usage = await get('/v1/usage');
    expect(usage.data.find((l) => l.operation === 'transcription')).toMatchObject({
      model: 'whisper',
      requests: 1,
      audio_seconds: Number(ms) / 1_000,
      input_characters: 0,
    });
    expect(usage.data.find((l) => l.operation === 'speech')).toMatchObject({ model: 'tts', requests: 1, audio_seconds: 0, input_characters: input.length });
    // The compliance export's usage carries the same quantities in the units they are priced in.
    const gateway = gw.gateway;
    const exported = await exportAccount({ pool: gateway.database.pool, store: gateway.store, vault: gateway.vault }, accountId, {
      metadata: adminMetadata('dpo-1'),
    });
    expect(exported!.usage.find((row) => row.operation === 'transcription')).toMatchObject({
      model: 'whisper',
      requests: '1',
      audio_milliseconds: ms.toString(),
      input_characters: '0',
    });
    expect(exported!.usage.find((row) => row.operation === 'speech')).toMatchObject({
      model: 'tts',
      requests: '1',
      audio_milliseconds: '0',
      input_characters: String(input.length),
    });
    const requests = await get('/v1/account/requests');
    const transcription = requests.data.find((r) => r.operation === 'transcription');
    expect(transcription?.usage).toEqual({
      input_tokens: '0',
      output_tokens: '0',
      audio_seconds: `${ms / 1_000n}.${(ms % 1_000n).toString().padStart(3, '0')}`,
      estimated: true,
    });
    expect(requests.data.find((r) => r.operation === 'speech')?.usage).toMatchObject({ input_characters: String(input.length) });

    const page = await (await fetch(`${gw.url}/dashboard/pricing`)).text();
    expect(page).toMatch(/<th scope="row">whisper<\/th><td>transcription<\/td>.*?\$0\.000101 per second/);
    expect(page).toMatch(/<th scope="row">tts<\/th><td>speech<\/td>.*?\$15\.000007 per million characters/);
  });
});

/** The audio's estimated input tokens as the gateway counts them: 17 a second of its header's duration, rounded up. */
function estimatedTokens(wav: Buffer): bigint {
  const { numerator, byteRate } = wavDurationSeconds(wav);
  return BigInt(Math.ceil((numerator / byteRate) * AUDIO_TOKENS_PER_SECOND));
}

/**
 * A transcription upload written by hand (node:http, chunked unless a content-length is given),
 * so that a test decides when each part of the multipart body goes out, in which order.
 */
const BOUNDARY = 'tollgate-test-boundary-7f3a';
const part = (name: string, value: string) => Buffer.from(`--${BOUNDARY}\r\ncontent-disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`);
const fileStart = Buffer.from(`--${BOUNDARY}\r\ncontent-disposition: form-data; name="file"; filename="speech.wav"\r\ncontent-type: audio/wav\r\n\r\n`);
const fileEnd = Buffer.from('\r\n');
const closing = Buffer.from(`--${BOUNDARY}--\r\n`);

interface RawUpload {
  write(bytes: Buffer): Promise<void>;
  end(): void;
  destroy(): void;
  readonly response: Promise<{ status: number; body: string }>;
}

function rawUpload(secret: string, headers: Record<string, string> = {}): RawUpload {
  const url = new URL(`${gw.url}/v1/audio/transcriptions`);
  const req = httpRequest({
    host: url.hostname,
    port: url.port,
    path: url.pathname,
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': `multipart/form-data; boundary=${BOUNDARY}`, ...headers },
  });
  const response = new Promise<{ status: number; body: string }>((resolve, reject) => {
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
  response.catch(() => undefined);
  return {
    // Written in 16 KiB pieces, each after the last was taken (an error after the answer is ignored).
    async write(bytes) {
      for (let at = 0; at < bytes.length; at += 16_384) {
        const ok = await new Promise<boolean>((resolve) => req.write(bytes.subarray(at, at + 16_384), (error) => resolve(!error)));
        if (!ok) return;
      }
    },
    end: () => req.end(),
    destroy: () => req.destroy(),
    response,
  };
}

/** A safety net, never the verdict: `promise`, or `message` as the failure if it never comes. */
function withinSafety<T>(promise: Promise<T>, message: string): Promise<T> {
  return Promise.race([
    promise,
    new Promise<T>((_, reject) => {
      setTimeout(() => reject(new Error(message)), 20_000).unref();
    }),
  ]);
}

describe('the upload streamed to the upstream', () => {
  it('sends the file on as it arrives: the upstream has its first bytes while the client still holds back the rest', async () => {
    const { accountId, secret } = await customer();
    const upload = rawUpload(secret);
    const started = server.uploadStarted();
    await upload.write(Buffer.concat([part('model', 'whisper'), part('response_format', 'json'), fileStart, speechWav.subarray(0, 100_000)]));
    // Nothing more is sent until the upstream has file bytes: a gateway that gathers the whole
    // upload before dispatching never gets there.
    await withinSafety(started, 'the upstream got no file bytes before the client finished: the gateway holds the upload');
    const before = server.received.length;
    // Fields after the file follow it to the upstream.
    await upload.write(Buffer.concat([speechWav.subarray(100_000), fileEnd, part('prompt', CANARY), closing]));
    upload.end();
    const { status, body } = await upload.response;
    expect(status).toBe(200);
    expect(JSON.parse(body)).toMatchObject({ text: TRANSCRIPT });
    expect(server.received.length).toBe(before + 1);
    expect(server.received.at(-1)).toMatchObject({ fileBytes: speechWav.length, fields: { model: 'whisper', response_format: 'json', prompt: CANARY } });
    const [event] = await settled(accountId);
    expect(event!.data.actualCost).toBe(((measuredMs(speechWav) + 999n) / 1_000n) * 101n);
  });

  it('takes a form whose file comes before its model (the file held whole, up to the limit)', async () => {
    const { accountId, secret } = await customer();
    const upload = rawUpload(secret);
    await upload.write(Buffer.concat([fileStart, speechWav, fileEnd, part('model', 'whisper'), part('response_format', 'text'), closing]));
    upload.end();
    const { status, body } = await upload.response;
    expect(status).toBe(200);
    expect(body.trim()).toBe(TRANSCRIPT);
    expect(server.received.at(-1)).toMatchObject({ fileBytes: speechWav.length, fields: { model: 'whisper', response_format: 'text' } });
    const [event] = await settled(accountId);
    expect(event!.data.usage.audioMilliseconds).toBe(measuredMs(speechWav));
  });

  it('an upload that goes over the limit mid-stream: 413 in OpenAI shape, the upstream request aborted, the reservation released once, nothing charged', async () => {
    const { accountId, secret } = await customer();
    const abortedBefore = server.abortedUploads();
    const receivedBefore = server.received.length;
    // A real WAV header (its duration is read before the reservation), then more bytes than the limit.
    const oversized = Buffer.concat([speechWav, Buffer.alloc(MAX_AUDIO_BYTES)]);
    const upload = rawUpload(secret);
    const started = server.uploadStarted();
    await upload.write(Buffer.concat([part('model', 'whisper'), fileStart, oversized.subarray(0, 100_000)]));
    await withinSafety(started, 'the upstream got no file bytes');
    await upload.write(Buffer.concat([oversized.subarray(100_000), fileEnd, closing]));
    upload.end();
    const { status, body } = await upload.response;
    expect(status).toBe(413);
    expect(JSON.parse(body)).toEqual({
      error: { message: expect.stringContaining(`${MAX_AUDIO_BYTES} bytes`), type: 'invalid_request_error', param: 'file', code: 'request_too_large' },
    });
    await until(() => (server.abortedUploads() > abortedBefore ? true : undefined), { what: 'the upstream request aborted' });
    expect(server.received.length).toBe(receivedBefore);
    const [release] = await released(accountId);
    expect(release!.data.reason).toBe('upload_incomplete');
    await gw.gateway.settlements.drain();
    const events = await accountEvents(gw.gateway.ledger, accountId);
    expect(eventsOfType(events, 'ReservationPlaced')).toHaveLength(1);
    expect(eventsOfType(events, 'ReservationReleased')).toHaveLength(1);
    expect(eventsOfType(events, 'ReservationSettled')).toEqual([]);
  });

  it('a field before the file that is too long: 400 before anything is reserved', async () => {
    const { accountId, secret } = await customer();
    const upload = rawUpload(secret);
    await upload.write(Buffer.concat([part('model', 'whisper'), part('prompt', 'x'.repeat(70_000)), fileStart, speechWav, fileEnd, closing]));
    upload.end();
    const { status, body } = await upload.response;
    expect(status).toBe(400);
    expect(JSON.parse(body).error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_value' });
    expect(requestEvents(await accountEvents(gw.gateway.ledger, accountId))).toEqual([]);
  });

  it('a field after the file that is not valid: the upload fails, 400, the reservation released, nothing charged', async () => {
    const { accountId, secret } = await customer();
    const upload = rawUpload(secret);
    await upload.write(Buffer.concat([part('model', 'whisper'), fileStart, speechWav, fileEnd, part('stream', 'true'), closing]));
    upload.end();
    const { status, body } = await upload.response;
    expect(status).toBe(400);
    expect(JSON.parse(body).error).toMatchObject({ type: 'invalid_request_error', param: 'stream', code: 'invalid_value' });
    const [release] = await released(accountId);
    expect(release!.data.reason).toBe('upload_incomplete');
    expect(eventsOfType(await accountEvents(gw.gateway.ledger, accountId), 'ReservationSettled')).toEqual([]);
  });

  it('a Content-Length over the limit: 413 before the body is read, nothing reserved', async () => {
    const { accountId, secret } = await customer();
    const upload = rawUpload(secret, { 'content-length': String(MAX_AUDIO_BYTES + 64 * 1_024 + 1) });
    // Only the first field goes out: the answer cannot have waited for the file.
    await upload.write(part('model', 'whisper'));
    const { status, body } = await upload.response;
    upload.destroy();
    expect(status).toBe(413);
    expect(JSON.parse(body).error).toMatchObject({ type: 'invalid_request_error', param: 'file', code: 'request_too_large' });
    expect(requestEvents(await accountEvents(gw.gateway.ledger, accountId))).toEqual([]);
  });

  it('a client that breaks off mid-upload: the upstream request aborted, the reservation released once, nothing charged', async () => {
    const { accountId, secret } = await customer();
    const abortedBefore = server.abortedUploads();
    const upload = rawUpload(secret);
    const started = server.uploadStarted();
    await upload.write(Buffer.concat([part('model', 'whisper'), fileStart, speechWav.subarray(0, 100_000)]));
    await withinSafety(started, 'the upstream got no file bytes');
    upload.destroy();
    await until(() => (server.abortedUploads() > abortedBefore ? true : undefined), { what: 'the upstream request aborted' });
    const [release] = await released(accountId);
    expect(release!.data.reason).toBe('upload_incomplete');
    await gw.gateway.settlements.drain();
    const events = await accountEvents(gw.gateway.ledger, accountId);
    expect(eventsOfType(events, 'ReservationPlaced')).toHaveLength(1);
    expect(eventsOfType(events, 'ReservationReleased')).toHaveLength(1);
    expect(eventsOfType(events, 'ReservationSettled')).toEqual([]);
  });
});

describe('token-priced transcription (gpt-4o-transcribe style)', () => {
  it("reserves the audio's estimated input tokens with the output cap, and settles on the tokens the upstream reports", async () => {
    const { accountId, client } = await customer();
    const result = await client.audio.transcriptions.create({ file: createReadStream(speechFile), model: 'whisper-tokens' });
    expect(result.text).toBe(TRANSCRIPT);
    const tokens = estimatedTokens(speechWav);
    const [placed] = eventsOfType(await accountEvents(gw.gateway.ledger, accountId), 'ReservationPlaced');
    // Not a reservation for the output alone: the audio's input tokens are held too (the model's
    // first request, so no history; the default 10% margin).
    const expected = estimateReservation({ promptTokens: tokens, maxOutputTokens: 256n, price: tokenPrice, marginBasisPoints: 1_000n });
    expect(placed!.data.amount).toBe(expected.amount);
    expect(expected.amount).toBeGreaterThan(
      estimateReservation({ promptTokens: 0n, maxOutputTokens: 256n, price: tokenPrice, marginBasisPoints: 1_000n }).amount,
    );
    const [event] = await settled(accountId);
    expect(event!.data.usage).toEqual({ inputTokens: tokens, outputTokens: 9n, estimated: false });
    expect(event!.data.actualCost).toBe(requestCost({ inputTokens: tokens, outputTokens: 9n }, tokenPrice));
  });
});

describe('streamed transcription cut mid-way (the charge policy rows)', () => {
  it('a client that leaves mid-stream: the upstream cancelled, the audio it took in charged (per second), marked estimated', async () => {
    const { accountId, client } = await customer();
    const abort = new AbortController();
    const stream = await client.audio.transcriptions.create(
      { file: createReadStream(speechFile), model: 'held-whisper', stream: true },
      { signal: abort.signal },
    );
    const types: string[] = [];
    const held = server.transcriptHeld();
    for await (const event of stream) {
      types.push(event.type);
      if (types.length === 2) {
        abort.abort();
        break;
      }
    }
    expect(types).toEqual(['transcript.text.delta', 'transcript.text.delta']);
    await held; // the upstream saw the gateway go
    const [event] = await settled(accountId);
    const ms = measuredMs(speechWav);
    expect(event!.data.outcome).toBe('client_disconnected');
    expect(event!.data.usage).toEqual({ inputTokens: 0n, outputTokens: 0n, estimated: true, audioMilliseconds: ms });
    expect(event!.data.actualCost).toBe((ms * 101n + 999n) / 1_000n);
  });

  it('a client that leaves mid-stream on a token-priced model: charged its estimated audio input tokens', async () => {
    const { accountId, client } = await customer();
    const abort = new AbortController();
    const stream = await client.audio.transcriptions.create(
      { file: createReadStream(speechFile), model: 'held-whisper-tokens', stream: true },
      { signal: abort.signal },
    );
    const held = server.transcriptHeld();
    let seen = 0;
    for await (const _ of stream) {
      if (++seen === 2) {
        abort.abort();
        break;
      }
    }
    await held;
    const [event] = await settled(accountId);
    const tokens = estimatedTokens(speechWav);
    expect(event!.data.outcome).toBe('client_disconnected');
    expect(event!.data.usage).toEqual({ inputTokens: tokens, outputTokens: 0n, estimated: true, audioMilliseconds: measuredMs(speechWav) });
    expect(event!.data.actualCost).toBe(requestCost({ inputTokens: tokens, outputTokens: 0n }, tokenPrice));
  });

  it('an upstream that drops the stream mid-way: the client sees the stream fail, the reservation released, nothing charged', async () => {
    const { accountId, client } = await customer();
    const stream = await client.audio.transcriptions.create({ file: createReadStream(speechFile), model: 'cut-whisper', stream: true }, { maxRetries: 0 });
    const types: string[] = [];
    await expect(
      (async () => {
        for await (const event of stream) types.push(event.type);
      })(),
    ).rejects.toThrow();
    expect(types).toEqual(['transcript.text.delta', 'transcript.text.delta']);
    const [release] = await released(accountId);
    expect(release!.data.reason).toBe('upstream_error_no_tokens');
    expect(eventsOfType(await accountEvents(gw.gateway.ledger, accountId), 'ReservationSettled')).toEqual([]);
  });
});

describe("a key's limits on the audio routes", () => {
  async function limitedKey(limits: unknown): Promise<{ accountId: string; client: OpenAI }> {
    const accountId = await openAccount(gw.gateway.ledger, { topUpUsd: '10' });
    const manager = await issueKey(gw.gateway.keys, accountId, ['account_read', 'account_write']);
    const worker = await issueKey(gw.gateway.keys, accountId);
    const response = await fetch(`${gw.url}/v1/account/keys/${worker.keyId}/limits`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${manager.secret}`, 'content-type': 'application/json' },
      body: JSON.stringify(limits),
    });
    expect(response.status).toBe(200);
    return { accountId, client: openAiClient(gw.url, worker.secret) };
  }

  it('a model outside the allowlist: 403 model_not_allowed, nothing reserved', async () => {
    const { accountId, client } = await limitedKey({ allowed_models: ['tts'] });
    const error = (await rejectionOf(client.audio.transcriptions.create({ file: createReadStream(speechFile), model: 'whisper' }))) as InstanceType<
      typeof OpenAI.APIError
    >;
    expect(error.status).toBe(403);
    expect(error.code).toBe('model_not_allowed');
    expect(requestEvents(await accountEvents(gw.gateway.ledger, accountId))).toEqual([]);
  });

  it("the key's spend limit refuses a reservation it cannot hold: 429 key_spend_limit_reached", async () => {
    const { accountId, client } = await limitedKey({ spend_limit: { period: 'day', amount_usd: '0.00' } });
    const error = (await rejectionOf(client.audio.transcriptions.create({ file: createReadStream(speechFile), model: 'whisper' }))) as InstanceType<
      typeof OpenAI.APIError
    >;
    expect(error.status).toBe(429);
    expect(error.code).toBe('key_spend_limit_reached');
    expect(eventsOfType(await accountEvents(gw.gateway.ledger, accountId), 'ReservationPlaced')).toEqual([]);
  });
});

describe('rate limits count audio', () => {
  let limited: TestGateway;
  const frozen = Date.now();

  beforeAll(async () => {
    // Room for one transcription's estimated audio tokens, not two; the limiter's clock stands
    // still, so nothing refills between the requests.
    const tokens = Number(estimatedTokens(speechWav));
    limited = await startTestGateway({
      models: [{ id: 'whisper', upstreams: [{ baseUrl: server.baseUrl, capacity: 4 }], maxOutputTokens: 256, operations: ['transcription'] }],
      env: { TOLLGATE_RATE_LIMIT_TPM: String(Math.floor(tokens * 1.5)) },
      admissionClock: () => frozen,
    });
    await priceModel(limited.gateway.ledger, 'whisper', { transcription: whisperPrice });
  });

  afterAll(async () => {
    await limited?.stop();
  });

  it("counts a transcription's estimated audio tokens against the tokens-per-minute limit", async () => {
    const accountId = await openAccount(limited.gateway.ledger, { topUpUsd: '10' });
    const { secret } = await issueKey(limited.gateway.keys, accountId);
    const client = openAiClient(limited.url, secret);
    const first = await client.audio.transcriptions.create({ file: createReadStream(speechFile), model: 'whisper' });
    expect(first.text).toBe(TRANSCRIPT);
    const error = (await rejectionOf(client.audio.transcriptions.create({ file: createReadStream(speechFile), model: 'whisper' }))) as InstanceType<
      typeof OpenAI.APIError
    >;
    expect(error.status).toBe(429);
    expect(error.message).toContain('tokens per minute');
  });
});

describe('zero retention for audio', () => {
  it('keeps the canary (spoken, in the metadata, in prompt) out of every event, log line and table', async () => {
    // Every test above sent it; the upstream really received it.
    expect(server.received.some((r) => r.fields.prompt === CANARY)).toBe(true);
    await gw.gateway.settlements.drain();
    const { rows } = await dumpDatabase(gw.databaseUrl);
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.filter((row) => row.includes(CANARY))).toEqual([]);
    expect(gw.logLines.filter((line) => line.includes(CANARY))).toEqual([]);
    expect(gw.logLines.filter((line) => line.includes('speech.wav'))).toEqual([]);
  });
});
