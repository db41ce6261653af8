import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import busboy from 'busboy';
import { parseBuffer } from 'music-metadata';

/**
 * A small OpenAI-compatible speech server on loopback, speaking the real wire format:
 * - POST /v1/audio/transcriptions and /translations: multipart in (busboy); the file's real
 *   duration read with music-metadata; answers json (with `usage: {type: "duration", seconds}`
 *   rounded up, as OpenAI's whisper-1 does), text, srt, verbose_json or vtt; `stream=true` answers
 *   SSE `transcript.text.delta` events and a `transcript.text.done` with token usage.
 * - POST /v1/audio/speech: JSON in; real audio from Debian's espeak-ng (WAV), sent with its
 *   content-length in 4 KiB chunks. Model `held-tts` sends the first `heldAfterBytes` and then
 *   holds until its client goes away (`speechHeld` resolves then, with the bytes it sent).
 * - Failures, by model: `fail-whisper` and `fail-tts` answer HTTP 500; `cut-whisper` sends
 *   headers and half a JSON answer, then drops the connection; `cut-tts` (with its length) and
 *   `cut-tts-nolength` (without) send the first `heldAfterBytes` of audio, then drop it;
 *   `held-tts-nolength` holds as `held-tts` does, without a content-length. With `stream=true`,
 *   `cut-whisper` sends two transcript deltas and drops the connection, and `held-whisper` (and
 *   `held-whisper-tokens`) sends two and holds until its client goes away (`transcriptHeld`).
 * - A model whose name ends in `-tokens` reports token usage on a json answer (gpt-4o-transcribe
 *   style): `input_tokens` 17 a second of audio, rounded up, `output_tokens` 9.
 * - `uploadStarted()` resolves when a transcription's file bytes start arriving, before its
 *   upload has ended; `abortedUploads` counts requests whose body broke off.
 * It records what it received (field names and values, file sizes) so tests can check what
 * the gateway forwarded.
 */
export interface SpeechServer {
  /** includes /v1 */
  readonly baseUrl: string;
  readonly received: { path: string; fields: Record<string, string>; fileBytes: number; fileName: string | undefined }[];
  /** resolves with the bytes sent when a held speech request's client went away */
  speechHeld(): Promise<number>;
  /** resolves when a held transcript stream's client went away */
  transcriptHeld(): Promise<void>;
  /** resolves when the next transcription's file bytes start arriving (its upload not yet ended) */
  uploadStarted(): Promise<void>;
  /** requests whose body broke off before its end (the gateway aborted them) */
  readonly abortedUploads: () => number;
  stop(): Promise<void>;
}

export const TRANSCRIPT = 'the quick brown fox';

/** Real speech as WAV: espeak-ng's own output, with correct sizes (written to a file, then read). */
export function espeakWav(text: string): Buffer {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-espeak-'));
  try {
    const file = join(dir, 'speech.wav');
    execFileSync('espeak-ng', ['-w', file, '--', text], { stdio: 'ignore' });
    return readFileSync(file);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function espeakAvailable(): boolean {
  return spawnSync('espeak-ng', ['--version'], { stdio: 'ignore' }).status === 0;
}

/** A WAV with a RIFF LIST/INFO chunk naming it `title` (INAM): metadata inside the audio. */
export function withWavTitle(wav: Buffer, title: string): Buffer {
  const text = Buffer.from(`${title}\0`, 'latin1');
  const padded = text.length % 2 === 0 ? text : Buffer.concat([text, Buffer.alloc(1)]);
  const inam = Buffer.concat([Buffer.from('INAM'), u32(text.length), padded]);
  const list = Buffer.concat([Buffer.from('LIST'), u32(4 + inam.length), Buffer.from('INFO'), inam]);
  const out = Buffer.concat([wav, list]);
  out.writeUInt32LE(out.length - 8, 4);
  return out;
}

/** A WAV's duration from its header, computed here independently of the gateway: data bytes / byte rate. */
export function wavDurationSeconds(wav: Buffer): { numerator: number; byteRate: number } {
  let offset = 12;
  let byteRate = 0;
  while (offset + 8 <= wav.length) {
    const id = wav.toString('latin1', offset, offset + 4);
    const size = wav.readUInt32LE(offset + 4);
    if (id === 'fmt ') byteRate = wav.readUInt32LE(offset + 16);
    if (id === 'data') return { numerator: size, byteRate };
    offset += 8 + size + (size % 2);
  }
  throw new Error('no data chunk');
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

export async function startSpeechServer(options: { heldAfterBytes?: number } = {}): Promise<SpeechServer> {
  const sockets = new Set<Socket>();
  const received: SpeechServer['received'] = [];
  let heldResolve: (bytes: number) => void = () => {};
  let held = new Promise<number>((resolve) => (heldResolve = resolve));
  let transcriptResolve: () => void = () => {};
  let transcriptHeld = new Promise<void>((resolve) => (transcriptResolve = resolve));
  let startedResolve: () => void = () => {};
  let started = new Promise<void>((resolve) => (startedResolve = resolve));
  let aborted = 0;
  const onUploadStarted = () => {
    startedResolve();
    started = new Promise<void>((resolve) => (startedResolve = resolve));
  };

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = req.url ?? '';
    if (req.method === 'POST' && (path === '/v1/audio/transcriptions' || path === '/v1/audio/translations')) {
      req.on('close', () => {
        if (!req.complete) aborted++;
      });
      const { fields, file, fileName } = await readMultipart(req, onUploadStarted);
      received.push({ path, fields, fileBytes: file.length, fileName });
      if (fields.model === 'fail-whisper') {
        res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'engine crashed', type: 'server_error' } }));
        return;
      }
      let seconds: number;
      try {
        const metadata = await parseBuffer(file, {}, { duration: true });
        seconds = metadata.format.duration ?? 0;
      } catch {
        res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'bad audio', type: 'invalid_request_error' } }));
        return;
      }
      const format = fields.response_format ?? 'json';
      if (fields.stream === 'true' && (fields.model === 'cut-whisper' || fields.model?.startsWith('held-whisper'))) {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        for (const word of TRANSCRIPT.split(' ').slice(0, 2)) res.write(`data: ${JSON.stringify({ type: 'transcript.text.delta', delta: `${word} ` })}\n\n`);
        if (fields.model === 'cut-whisper') {
          await new Promise<void>((resolve) => res.write(Buffer.alloc(0), () => resolve()));
          res.destroy();
          return;
        }
        await new Promise<void>((resolve) => (res.destroyed ? resolve() : res.once('close', () => resolve())));
        transcriptResolve();
        transcriptHeld = new Promise<void>((resolve) => (transcriptResolve = resolve));
        return;
      }
      if (fields.model === 'cut-whisper') {
        // Headers and half an answer, then the connection drops.
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '400' });
        res.write('{"text": "the quick');
        await new Promise((resolve) => setImmediate(resolve));
        res.destroy();
        return;
      }
      if (fields.stream === 'true') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        for (const word of TRANSCRIPT.split(' ')) res.write(`data: ${JSON.stringify({ type: 'transcript.text.delta', delta: `${word} ` })}\n\n`);
        const usage = { type: 'tokens', input_tokens: 120, output_tokens: 9, total_tokens: 129, input_token_details: { audio_tokens: 120, text_tokens: 0 } };
        res.end(`data: ${JSON.stringify({ type: 'transcript.text.done', text: TRANSCRIPT, usage })}\n\n`);
        return;
      }
      const end = timestamp(seconds, format === 'vtt' ? '.' : ',');
      const usage = fields.model?.endsWith('-tokens')
        ? { type: 'tokens', input_tokens: Math.ceil(seconds * 17), output_tokens: 9, total_tokens: Math.ceil(seconds * 17) + 9 }
        : { type: 'duration', seconds: Math.ceil(seconds) };
      switch (format) {
        case 'text':
          res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end(`${TRANSCRIPT}\n`);
          return;
        case 'srt':
          res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end(`1\n00:00:00,000 --> ${end}\n${TRANSCRIPT}\n\n`);
          return;
        case 'vtt':
          res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end(`WEBVTT\n\n00:00:00.000 --> ${end}\n${TRANSCRIPT}\n\n`);
          return;
        case 'verbose_json':
          res.writeHead(200, { 'content-type': 'application/json' }).end(
            JSON.stringify({
              task: path.endsWith('translations') ? 'translate' : 'transcribe',
              language: 'english',
              duration: seconds,
              text: TRANSCRIPT,
              segments: [
                {
                  id: 0,
                  seek: 0,
                  start: 0,
                  end: seconds,
                  text: TRANSCRIPT,
                  tokens: [1, 2, 3],
                  temperature: 0,
                  avg_logprob: -0.2,
                  compression_ratio: 1,
                  no_speech_prob: 0,
                },
              ],
              usage,
            }),
          );
          return;
        default:
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ text: TRANSCRIPT, usage }));
          return;
      }
    }
    if (req.method === 'POST' && path === '/v1/audio/speech') {
      const body = JSON.parse(await readText(req)) as { model: string; input: string; voice: string };
      received.push({ path, fields: { model: body.model, voice: body.voice }, fileBytes: 0, fileName: undefined });
      if (body.model === 'fail-tts') {
        res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'engine crashed', type: 'server_error' } }));
        return;
      }
      const audio = espeakWav(body.input);
      const declared = body.model.endsWith('-nolength') ? {} : { 'content-length': String(audio.length) };
      res.writeHead(200, { 'content-type': 'audio/wav', ...declared });
      const holdAt = body.model.startsWith('held-tts') ? (options.heldAfterBytes ?? 8_192) : Number.POSITIVE_INFINITY;
      const cutAt = body.model.startsWith('cut-tts') ? (options.heldAfterBytes ?? 8_192) : Number.POSITIVE_INFINITY;
      let sent = 0;
      while (sent < audio.length) {
        if (sent >= cutAt) {
          // The engine dies mid-audio: the connection drops once the first bytes are out.
          await new Promise<void>((resolve) => res.write(Buffer.alloc(0), () => resolve()));
          res.destroy();
          return;
        }
        if (sent >= holdAt) {
          // Held: the rest never comes; the gateway must cancel us when its client leaves.
          await new Promise<void>((resolve) => (res.destroyed ? resolve() : res.once('close', () => resolve())));
          heldResolve(sent);
          held = new Promise<number>((resolve) => (heldResolve = resolve));
          return;
        }
        const chunk = audio.subarray(sent, Math.min(sent + 4_096, audio.length, holdAt, cutAt));
        sent += chunk.length;
        if (!res.write(chunk)) await new Promise((resolve) => res.once('drain', resolve));
        await new Promise((resolve) => setImmediate(resolve));
      }
      res.end();
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'not found', type: 'invalid_request_error' } }));
  }

  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    received,
    speechHeld: () => held,
    transcriptHeld: () => transcriptHeld,
    uploadStarted: () => started,
    abortedUploads: () => aborted,
    async stop() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function timestamp(seconds: number, separator: string): string {
  const ms = Math.round(seconds * 1_000);
  const pad = (n: number, width = 2) => String(n).padStart(width, '0');
  return `${pad(Math.floor(ms / 3_600_000))}:${pad(Math.floor(ms / 60_000) % 60)}:${pad(Math.floor(ms / 1_000) % 60)}${separator}${pad(ms % 1_000, 3)}`;
}

function readText(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (text += chunk));
    req.on('end', () => resolve(text));
    req.on('error', reject);
  });
}

function readMultipart(req: IncomingMessage, onFileBytes: () => void): Promise<{ fields: Record<string, string>; file: Buffer; fileName: string | undefined }> {
  return new Promise((resolve, reject) => {
    const fields: Record<string, string> = {};
    const chunks: Buffer[] = [];
    let fileName: string | undefined;
    const parser = busboy({ headers: req.headers });
    parser.on('field', (name, value) => (fields[name] = value));
    parser.on('file', (_name, stream, info) => {
      fileName = info.filename;
      stream.on('data', (chunk: Buffer) => {
        if (chunks.length === 0 && !req.complete) onFileBytes();
        chunks.push(chunk);
      });
    });
    parser.on('close', () => resolve({ fields, file: Buffer.concat(chunks), fileName }));
    parser.on('error', reject);
    req.pipe(parser);
  });
}
