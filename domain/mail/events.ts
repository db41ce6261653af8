import { z } from 'zod';
import { defineEvent, type EventOf } from '../events/define';
import { idSchema } from '../events/schema';

/**
 * The mail outbox's record, one stream per email (`email-<emailId>`). An email is requested by
 * the feature that needs it (verification, password reset, invitation, notices); the outbox
 * subscriber turns the request into a row the sender works through, and the sender records the
 * outcome. Nothing personal travels in clear: the recipient and the template's parameters are one
 * ciphertext under the vault key of `subject` (a user or an account), so erasing that subject
 * erases the mail's content too. No token is here either: a link's token is derived at send
 * time from the email id under a server secret (see src/mail/outbox.ts).
 */
export const EmailRequested = defineEvent(
  'EmailRequested',
  z.object({
    emailId: idSchema,
    /** a template name (src/mail/templates.ts) */
    kind: idSchema,
    /** whose vault key encrypts `payloadCiphertext`: a user id or an account id */
    subject: idSchema,
    /** {"to": "...", "params": {...}} encrypted with the subject's personal-data key */
    payloadCiphertext: z.string().min(1),
  }),
);

export const EmailSent = defineEvent(
  'EmailSent',
  z.object({
    emailId: idSchema,
    /** the Message-ID header every attempt of this email carried */
    messageId: z.string().min(1),
    attempts: z.number().int().min(1),
    transport: z.enum(['smtp', 'file']),
  }),
);

export const EmailAbandoned = defineEvent(
  'EmailAbandoned',
  z.object({
    emailId: idSchema,
    attempts: z.number().int().min(0),
    /** an error code, never a server's message (it may quote the address) */
    reason: z.string().min(1).max(100),
  }),
);

export const mailEventDefinitions = [EmailRequested, EmailSent, EmailAbandoned] as const;

export type MailEvent = EventOf<(typeof mailEventDefinitions)[number]>;

export function emailStreamId(emailId: string): string {
  return `email-${emailId}`;
}
