/**
 * Local token counting, Tollgate's (pieces remembered once counted) against the encoder's own
 * countTokens, on the same texts in the same run:
 *   npx tsx bench/tokens.ts [--rounds 2000]
 * Texts: a repeated word (bench/support/stream-upstream.ts streams it), English prose (the README),
 * and a mix of scripts. Each count is checked equal first; printed: µs per 4 KiB and the ratio.
 * Then one pre-tokenizer piece of 20,000 characters (letters or Chinese without a space): the
 * encoder given it whole (quadratic in its length) against countTextTokens (in parts of
 * MAX_ENCODED_LENGTH); printed: ms per count, both counts, and the ratio.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { countTokens } from 'gpt-tokenizer/encoding/cl100k_base';
import { countTextTokens, MAX_ENCODED_LENGTH } from '../adapters/inference/tokens';
import { flag, printTable } from './support/embedded-postgres';

if (process.argv.includes('--help') || process.argv.includes('-h')) {
  process.stdout.write('npx tsx bench/tokens.ts [--rounds 2000]: µs per 4 KiB counted, the encoder alone against countTextTokens\n');
  process.exit(0);
}
const ROUNDS = flag('--rounds', 2_000);
const plain = { allowedSpecial: new Set<string>(), disallowedSpecial: new Set<string>() };
const readme = readFileSync(join(__dirname, '..', 'README.md'), 'utf8');
const texts: Record<string, string> = {
  'repeated word': 'tollgate '.repeat(456).slice(0, 4_096),
  'English prose (README)': readme.slice(0, 4_096),
  'mixed scripts': 'Grüße aus 東京 — 12,345.67 €, naïve café; Привет мир! 🙂 '.repeat(80).slice(0, 4_096),
};

function microsPer(count: (text: string) => number, text: string): number {
  for (let i = 0; i < 200; i++) count(text);
  const started = performance.now();
  for (let i = 0; i < ROUNDS; i++) count(text);
  return ((performance.now() - started) * 1_000) / ROUNDS;
}

const rows: string[][] = [];
for (const [name, text] of Object.entries(texts)) {
  const expected = countTokens(text, plain);
  if (countTextTokens(text) !== expected) throw new Error(`${name}: countTextTokens ${countTextTokens(text)} != encoder ${expected}`);
  const encoder = microsPer((t) => countTokens(t, plain), text);
  const tollgate = microsPer(countTextTokens, text);
  rows.push([name, String(expected), encoder.toFixed(1), tollgate.toFixed(1), `${(tollgate / encoder).toFixed(2)}x`]);
}
printTable([['text (4 KiB)', 'tokens', 'encoder µs', 'countTextTokens µs', 'ratio'], ...rows]);

/** ms per count, each round on a text of its own: the encoder remembers the pieces it has seen. */
function millisPer(count: (text: string) => number, text: string, rounds: number): number {
  const variants = Array.from({ length: rounds }, (_, i) => `${String.fromCharCode(0x4e00 + i)}${text.slice(1)}`);
  const started = performance.now();
  for (const variant of variants) count(variant);
  return (performance.now() - started) / rounds;
}

const longRows: string[][] = [];
for (const [name, text] of Object.entries({
  'letters, no space': 'a'.repeat(20_000),
  'Chinese, no space': '我们的模型在这里回答问题'.repeat(1_667).slice(0, 20_000),
})) {
  const encoderTokens = countTokens(text, plain);
  const encoder = millisPer((t) => countTokens(t, plain), text, 3);
  const tollgate = millisPer(countTextTokens, text, 50);
  longRows.push([name, String(encoderTokens), String(countTextTokens(text)), encoder.toFixed(1), tollgate.toFixed(2), `${(tollgate / encoder).toFixed(4)}x`]);
}
process.stdout.write(`\none piece of 20,000 characters (countTextTokens cuts it into parts of ${MAX_ENCODED_LENGTH}):\n`);
printTable([['text', 'encoder tokens', 'countTextTokens tokens', 'encoder ms', 'countTextTokens ms', 'ratio'], ...longRows]);
