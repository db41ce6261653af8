import type { z } from 'zod';
import { eventRegistry, type DomainEvent } from './catalogue';
import type { EventDefinition } from './define';
import type { Json } from './json';
import { encodeMetadata, hotDataEncoders } from './hot-encoders';
import { storedMetadataSchema, type EventMetadata } from './metadata';

/** Structurally the port's EventCodec<E> (domain may not import src/ports). */
export interface DomainEventCodec<E> {
  encode(event: E): { type: string; data: Json; metadata: Json };
  decode(stored: { type: string; data: unknown; metadata: unknown }): E;
}

/** A stored event that cannot become a domain event: unknown type, bad shape, newer version. */
export class EventCodecError extends Error {
  override readonly name = 'EventCodecError';
  constructor(
    readonly eventType: string,
    message: string,
    override readonly cause?: unknown,
  ) {
    super(`event ${eventType}: ${message}`);
  }
}

function definitionOf(type: string): EventDefinition {
  const def = eventRegistry.get(type);
  if (!def) throw new EventCodecError(type, 'unknown event type');
  return def;
}

/** Lifts stored data from `version` to the definition's current version, one step at a time. */
export function upcast(def: EventDefinition, data: unknown, version: number): unknown {
  if (version > def.version) {
    throw new EventCodecError(def.type, `schema version ${version} is newer than this code knows (${def.version})`);
  }
  let current = data;
  for (let v = version; v < def.version; v++) {
    const step = def.upcasters.find((u) => u.from === v);
    if (!step) throw new EventCodecError(def.type, `no upcaster from v${v}`);
    const old = step.schema.safeParse(current);
    if (!old.success) throw new EventCodecError(def.type, `invalid v${v} data: ${issues(old.error)}`, old.error);
    current = (step.upcast as (o: unknown) => unknown)(old.data);
  }
  return current;
}

function issues(error: z.ZodError): string {
  // Paths and codes only: a message must never echo stored values back.
  return error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.code}`).join('; ');
}

export const domainEventCodec: DomainEventCodec<DomainEvent> = {
  encode(event) {
    const def = definitionOf(event.type);
    const hot = hotDataEncoders.get(event.type);
    if (hot) {
      const data = hot(event.data as never);
      const metadata = encodeMetadata(event.metadata, def.version);
      // Validated as every reader will read it: what cannot be read back is never written.
      const dataCheck = def.schema.safeParse(data);
      if (!dataCheck.success) throw new EventCodecError(event.type, `invalid data: ${issues(dataCheck.error)}`, dataCheck.error);
      const metadataCheck = storedMetadataSchema.safeParse(metadata);
      if (!metadataCheck.success) throw new EventCodecError(event.type, `invalid metadata: ${issues(metadataCheck.error)}`, metadataCheck.error);
      return { type: event.type, data, metadata };
    }
    const data = def.schema.encode(event.data) as Json;
    const metadata = storedMetadataSchema.encode({ ...event.metadata, schemaVersion: def.version }) as Json;
    return { type: event.type, data, metadata };
  },

  decode(stored) {
    const def = definitionOf(stored.type);
    const meta = storedMetadataSchema.safeParse(stored.metadata);
    if (!meta.success) throw new EventCodecError(stored.type, `invalid metadata: ${issues(meta.error)}`, meta.error);
    const { schemaVersion, ...metadata } = meta.data;
    const data = def.schema.safeParse(upcast(def, stored.data, schemaVersion));
    if (!data.success) throw new EventCodecError(stored.type, `invalid data: ${issues(data.error)}`, data.error);
    const eventMetadata: EventMetadata = metadata;
    return { type: stored.type, data: data.data, metadata: eventMetadata } as DomainEvent;
  },
};
