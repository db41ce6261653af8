import { z } from 'zod';

/**
 * Building blocks for event schemas. Each is a zod codec: `parse`/`decode` turns stored JSON
 * into domain values, `encode` turns them back. bigint travels as a decimal string because
 * JSON has no bigint and a JS number would round amounts above 2^53.
 */

/** Any integer amount of micro-USD, negative allowed (a balance may be in debt). */
export const microUsdSchema = z.codec(z.string().regex(/^-?(0|[1-9]\d*)$/, 'integer micro-USD as a decimal string'), z.bigint(), {
  decode: (s) => BigInt(s),
  encode: (b) => b.toString(),
});

/** Non-negative integer (amounts moved, token counts) as a decimal string. */
export const naturalSchema = z.codec(z.string().regex(/^(0|[1-9]\d*)$/, 'non-negative integer as a decimal string'), z.bigint(), {
  decode: (s) => BigInt(s),
  encode: (b) => b.toString(),
});

export const isoInstantSchema = z.iso.datetime({ offset: true });

export const idSchema = z.string().min(1);
