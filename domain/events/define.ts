import type { z } from 'zod';
import type { EventMetadata } from './metadata';

/**
 * Lifts stored data of version `from` to version `from + 1`. `schema` validates the old
 * shape first, so an upcaster never guesses about malformed input.
 */
export interface Upcaster {
  readonly from: number;
  readonly schema: z.ZodType;
  readonly upcast: (old: never) => unknown;
}

export function upcaster<S extends z.ZodType>(from: number, schema: S, upcast: (old: z.output<S>) => unknown): Upcaster {
  return { from, schema, upcast: upcast as (old: never) => unknown };
}

export interface EventDefinition<T extends string = string, S extends z.ZodType = z.ZodType> {
  readonly type: T;
  /** current schema version: what encode writes */
  readonly version: number;
  /** the current data schema, as a codec between stored JSON and domain values */
  readonly schema: S;
  /** one per older version, from 1 to version - 1 */
  readonly upcasters: readonly Upcaster[];
}

export function defineEvent<T extends string, S extends z.ZodType>(
  type: T,
  schema: S,
  options: { version?: number; upcasters?: readonly Upcaster[] } = {},
): EventDefinition<T, S> {
  const version = options.version ?? 1;
  const upcasters = [...(options.upcasters ?? [])].sort((a, b) => a.from - b.from);
  // Every older version needs a way up; a gap would make old events undecodable.
  for (let v = 1; v < version; v++) {
    if (!upcasters.some((u) => u.from === v)) throw new Error(`event ${type} v${version} has no upcaster from v${v}`);
  }
  return { type, version, schema, upcasters };
}

/** The in-memory event for a definition: `{ type, data, metadata }`. */
export type EventOf<D extends EventDefinition> =
  D extends EventDefinition<infer T, infer S> ? { readonly type: T; readonly data: z.output<S>; readonly metadata: EventMetadata } : never;
