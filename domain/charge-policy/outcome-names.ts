import { z } from 'zod';

/** Outcomes that are charged: recorded on ReservationSettled. */
export const settledOutcomeSchema = z.enum([
  'completed',
  'completed_after_disconnect',
  'client_disconnected',
  /** the gateway ended it at its maximum request duration; what was produced is charged */
  'max_duration_reached',
  'moderation_refusal',
  'upstream_error',
]);
export type SettledOutcome = z.output<typeof settledOutcomeSchema>;

/** Why a reservation was released without charge: recorded on ReservationReleased. */
export const releaseReasonSchema = z.enum([
  'gateway_error',
  'upstream_error_no_tokens',
  'moderation_refusal_no_tokens_reported',
  /** the client's upload failed before the upstream had it whole (audio over the size limit mid-stream, broken off) */
  'upload_incomplete',
]);
export type ReleaseReason = z.output<typeof releaseReasonSchema>;
