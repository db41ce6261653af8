import { ZxcvbnFactory } from '@zxcvbn-ts/core';
import { adjacencyGraphs, dictionary } from '@zxcvbn-ts/language-common';

/** Longest password accepted: bcrypt reads 72 bytes, so a longer one would be cut silently. */
export const MAX_PASSWORD_BYTES = 72;
export const MIN_PASSWORD_LENGTH = 12;

let checker: ZxcvbnFactory | undefined;

/**
 * Why a password is refused, in words for the person choosing it, or null when it is fine: at
 * least 12 characters, at most 72 bytes, and not common or guessable by zxcvbn-ts's common
 * password lists, dictionaries and patterns (score 3 of 4 or better). `context` (email, name)
 * counts against it too.
 */
export function passwordProblem(password: string, context: readonly string[] = []): string | null {
  if ([...password].length < MIN_PASSWORD_LENGTH) return `The password must be at least ${MIN_PASSWORD_LENGTH} characters long.`;
  if (Buffer.byteLength(password, 'utf8') > MAX_PASSWORD_BYTES) return `The password must be at most ${MAX_PASSWORD_BYTES} bytes long.`;
  checker ??= new ZxcvbnFactory({ dictionary: { ...dictionary }, graphs: adjacencyGraphs });
  const result = checker.check(
    password,
    context.filter((c) => c.length > 0),
  );
  if (result.score >= 3) return null;
  return 'This password is too common or too easy to guess; choose a longer or less predictable one (a few unrelated words work well).';
}
