import { z } from 'zod';
import { idSchema, isoInstantSchema } from './schema';
import type { IsoInstant } from '../time/instant';

/** Who caused a change: a customer's API key, a signed-in user, an operator, or one of our own processes. */
export const actorSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('customer_key'), keyId: idSchema }),
  z.object({ kind: z.literal('admin'), adminId: idSchema }),
  z.object({ kind: z.literal('system'), process: idSchema }),
  /** a person signed in to the dashboard (src/identity) */
  z.object({ kind: z.literal('user'), userId: idSchema }),
]);
export type Actor = z.output<typeof actorSchema>;

/**
 * Metadata of an event in memory. The event id is not here: the store holds it (NewEvent.id).
 * schemaVersion is not here either: in memory every event is at its current version (the
 * codec writes the version into stored metadata and upcasts on read).
 */
export interface EventMetadata {
  /** the request (or job run) this belongs to: ties a gateway request to its ledger events */
  readonly correlationId: string;
  /** the id of the command or event that directly caused this one */
  readonly causationId: string;
  readonly actor: Actor;
  readonly occurredAt: IsoInstant;
}

export const storedMetadataSchema = z.object({
  correlationId: idSchema,
  causationId: idSchema,
  actor: actorSchema,
  occurredAt: isoInstantSchema,
  schemaVersion: z.number().int().min(1),
});
export type StoredMetadata = z.output<typeof storedMetadataSchema>;

/**
 * Metadata every command carries. Time and ids come in here because the domain has no clock
 * and no randomness.
 */
export interface CommandMetadata {
  readonly now: IsoInstant;
  readonly correlationId: string;
  readonly causationId: string;
  readonly actor: Actor;
}

export function eventMetadataFrom(command: CommandMetadata): EventMetadata {
  return { correlationId: command.correlationId, causationId: command.causationId, actor: command.actor, occurredAt: command.now };
}

/** A command to a decider: its name, its data, and the metadata every command carries. */
export type Command<T extends string, D> = { readonly type: T; readonly data: D; readonly metadata: CommandMetadata };
