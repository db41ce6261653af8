import { mkdtempSync, createReadStream, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseBuffer } from 'music-metadata';
import OpenAI from 'openai';
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
});

afterAll(async () => {
  await gw?.stop();
  await server?.stop();
});

async function priceModel(ledger: Ledger, modelId: string, prices: Partial<Record<Operation, typeof ttsPrice | typeof whisperPrice>>): Promise<void> {
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
