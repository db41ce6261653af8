import { z } from 'zod';
import { defineEvent, type EventOf } from '../events/define';
import { idSchema, isoInstantSchema, naturalSchema } from '../events/schema';

/**
 * The retention stream (`retention`): what each retention run carried out, so erasures and
 * purges are themselves history. Ids and counts only: nothing a run removed is repeated here.
 */
export const RetentionRunCompleted = defineEvent(
  'RetentionRunCompleted',
  z.object({
    runId: idSchema,
    /** the instant the run measured every period from */
    asOf: isoInstantSchema,
    /** audit entries removed from the head of the chain, and the new anchor (last removed entry) */
    auditEntriesPurged: naturalSchema,
    auditAnchor: z.object({ entryNo: naturalSchema, hash: z.string().regex(/^[0-9a-f]{64}$/) }).nullable(),
    /** rows of per-request metadata removed from read models */
    requestMetadataPurged: naturalSchema,
    /** accounts whose personal-data key was destroyed in this run */
    personalDataErased: z.array(idSchema),
  }),
);

export const retentionEventDefinitions = [RetentionRunCompleted] as const;

export type RetentionEvent = EventOf<(typeof retentionEventDefinitions)[number]>;
