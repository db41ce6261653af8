import { z } from 'zod';

/** What a model is asked to do; each is priced separately. */
export const operationSchema = z.enum(['chat', 'completion', 'embedding']);
export type Operation = z.output<typeof operationSchema>;
export const OPERATIONS: readonly Operation[] = operationSchema.options;
