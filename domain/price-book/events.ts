import { z } from 'zod';
import { defineEvent, type EventOf } from '../events/define';
import { idSchema, isoInstantSchema, naturalSchema } from '../events/schema';
import { operationSchema } from './operation';

/** The price book stream's events: a single stream for the whole catalogue of models. */

export const ModelAdded = defineEvent(
  'ModelAdded',
  z.object({
    modelId: idSchema,
    operations: z.array(operationSchema).min(1),
    /** the cap used for the reservation estimate when a request sets no max_tokens */
    maxOutputTokens: naturalSchema,
  }),
);

export const ModelRetired = defineEvent('ModelRetired', z.object({ modelId: idSchema }));

export const modelStatusSchema = z.enum(['preview', 'available', 'deprecated']);
export type ModelStatus = z.output<typeof modelStatusSchema>;

/**
 * What customers are told about a model: the catalogue entry shown on the pricing page, in the
 * dashboard and in /v1/models. A deprecated model names the instant it retires; from then on
 * requests for it are refused with a 404 naming the retirement.
 */
export const ModelDescribed = defineEvent(
  'ModelDescribed',
  z.object({
    modelId: idSchema,
    description: z.string(),
    contextLength: z.number().int().min(1),
    licence: z.string(),
    rulesText: z.string(),
    rulesUrl: z.string().nullable(),
    status: modelStatusSchema,
    retiresAt: isoInstantSchema.nullable(),
    /** why a retirement comes with less notice than the rule asks (audited); absent otherwise */
    shortNoticeReason: z.string().optional(),
  }),
);

/**
 * A price for one model and operation from `effectiveAt` on. `version` numbers every price
 * change in the book (1, 2, 3, ...); a reservation records it and settles at that price.
 */
export const PriceSet = defineEvent(
  'PriceSet',
  z.object({
    version: z.number().int().min(1),
    modelId: idSchema,
    operation: operationSchema,
    inputPerMillion: naturalSchema,
    outputPerMillion: naturalSchema,
    /**
     * micro-USD per second of audio (transcription, translation). Absent on prices set before
     * speech was sold, and on token-only prices: 0.
     */
    perAudioSecond: naturalSchema.optional(),
    /** micro-USD per million input characters (speech); absent: 0 */
    perMillionCharacters: naturalSchema.optional(),
    effectiveAt: isoInstantSchema,
    /** true when it raises the price that would otherwise be in force then: customers are told ahead */
    increase: z.boolean().optional(),
    /** set when an operator scheduled an increase with less than the required notice */
    shortNoticeReason: z.string().optional(),
  }),
);

export const priceBookEventDefinitions = [ModelAdded, ModelRetired, ModelDescribed, PriceSet] as const;

export type PriceBookEvent = EventOf<(typeof priceBookEventDefinitions)[number]>;
