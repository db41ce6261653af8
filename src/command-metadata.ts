import { randomUUID } from 'node:crypto';
import type { Actor, CommandMetadata } from '../domain/events/metadata';

/** Metadata for a command: the clock and ids come from here, never from the domain. */
export function commandMetadata(actor: Actor, correlationId: string = randomUUID(), causationId: string = correlationId): CommandMetadata {
  return { now: new Date().toISOString(), correlationId, causationId, actor };
}

export function systemMetadata(process: string, correlationId?: string): CommandMetadata {
  return commandMetadata({ kind: 'system', process }, correlationId);
}

export function adminMetadata(adminId: string, correlationId?: string): CommandMetadata {
  return commandMetadata({ kind: 'admin', adminId }, correlationId);
}
