import { createHash, createHmac, randomBytes, randomUUID } from 'node:crypto';
import type { Pool, PoolClient } from 'pg';
import type { Logger } from 'pino';
import type { DomainEvent } from '../../domain/events';
import { eventMetadataFrom, type CommandMetadata } from '../../domain/events/metadata';
import { emailStreamId } from '../../domain/mail';
import { systemMetadata } from '../command-metadata';
import type { Migration } from '../ports/migration';
import type { PersonalDataVault } from '../ports/personal-data-vault';
import { VersionConflictError, type AppendResult, type EventStore, type RecordedEvent } from '../ports/event-store';
import { MailSendError, type MailTransport } from '../ports/mail-transport';
import type { SqlProjection } from '../read-models/runner';
import { startPollLoop, type PollLoop } from '../process-managers/poll-loop';
import { mailTemplate, type MailKind } from './templates';

/**
 * The mail outbox: every email Tollgate sends goes through it.
 *
 * Requesting an email appends EmailRequested to the email's own stream (`email-<emailId>`); the
 * recipient and the template's parameters are encrypted under the vault key of a subject (the
 * user or account the mail concerns), so erasing that subject's personal data erases the mail.
 * The `mail-outbox` subscriber follows the log (checkpointed like a projection) and inserts one
 * `mail_outbox` row per request in the same transaction as its checkpoint. The sender, a
 * background worker on the one instance that holds the workers role (src/instances/lease.ts),
 * renders due rows at send time, sends them and records EmailSent (or EmailAbandoned after
 * MAX_MAIL_ATTEMPTS, retried with doubling backoff meanwhile).
 *
 * At least once, never lost: a row is marked sent only after the transport accepted the message;
 * a crash between the two sends it again with the same Message-ID (`<emailId@host>`), which
 * receiving systems use to drop the duplicate. Requesting with the same emailId twice makes one
 * email (the stream exists already).
 *
 * Tokens in links never enter the log, a table or a line: a link's token is HMAC-SHA256 of the
 * email id under a server secret (random, kept encrypted in `mail_link_secret`), so every retry
 * sends the same link, and the requesting feature stores only its hash (`hashLinkToken`) to
 * check it when it comes back.
 */

export const MAX_MAIL_ATTEMPTS = 8;
/** The vault subject the link secret is encrypted under. */
const LINK_SECRET_SUBJECT = 'system-mail-links';

export const mailOutboxMigration: Migration = {
  id: '0060_mail_outbox',
  sql: `
    CREATE TABLE mail_outbox (
      email_id text PRIMARY KEY,
      kind text NOT NULL,
      subject text NOT NULL,
      payload_ciphertext text NOT NULL,
      status text NOT NULL CHECK (status IN ('pending', 'sent', 'abandoned')),
      attempts integer NOT NULL DEFAULT 0,
      next_attempt_at timestamptz NOT NULL DEFAULT now(),
      last_error text,
      requested_at timestamptz NOT NULL,
      sent_at timestamptz
    );
    CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt_at) WHERE status = 'pending';
    CREATE INDEX mail_outbox_subject ON mail_outbox (subject);
    CREATE TABLE mail_link_secret (
      id integer PRIMARY KEY CHECK (id = 1),
      secret_ciphertext text NOT NULL
    );
  `,
};

/** SHA-256 (hex) of a link token: what a feature stores to recognise the token when it comes back. */
export function hashLinkToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** The subscriber that turns the log's mail events into outbox rows (rides along the read models' runner). */
export const mailOutboxSubscriber: SqlProjection<DomainEvent> = {
  name: 'mail-outbox',
  async apply(db: PoolClient, events: readonly RecordedEvent<DomainEvent>[]) {
    for (const { event } of events) {
      switch (event.type) {
        case 'EmailRequested':
          await db.query(
            `INSERT INTO mail_outbox (email_id, kind, subject, payload_ciphertext, status, requested_at)
             VALUES ($1, $2, $3, $4, 'pending', $5) ON CONFLICT (email_id) DO NOTHING`,
            [event.data.emailId, event.data.kind, event.data.subject, event.data.payloadCiphertext, event.metadata.occurredAt],
          );
          break;
        case 'EmailSent':
          await db.query(`UPDATE mail_outbox SET status = 'sent', attempts = GREATEST(attempts, $2), sent_at = COALESCE(sent_at, $3) WHERE email_id = $1`, [
            event.data.emailId,
            event.data.attempts,
            event.metadata.occurredAt,
          ]);
          break;
        case 'EmailAbandoned':
          await db.query(`UPDATE mail_outbox SET status = 'abandoned' WHERE email_id = $1 AND status = 'pending'`, [event.data.emailId]);
          break;
        default:
          break;
      }
    }
  },
  // Never emptied: a rebuilt outbox would send every email again.
  async reset() {},
};

export interface MailRequest {
  readonly kind: MailKind;
  /** the recipient's address */
  readonly to: string;
  /** whose personal data the mail is: a user id or an account id (its vault key encrypts it) */
  readonly subject: string;
  /** the template's parameters (see MAIL_TEMPLATES) */
  readonly params: Readonly<Record<string, string>>;
  /** the same id twice makes one email; a new random id when absent */
  readonly emailId?: string;
  readonly metadata: CommandMetadata;
}

export interface RequestedMail {
  readonly emailId: string;
  /** the token the email's link carries (for templates with a link); hand it to nobody, store only `linkTokenHash` */
  readonly linkToken: string;
  readonly linkTokenHash: string;
  readonly position: AppendResult['lastPosition'] | null;
}

/** Requests emails and derives their link tokens; shared by every instance (no worker state). */
export class MailOutbox {
  private secret: Promise<Buffer> | undefined;

  constructor(
    private readonly pool: Pool,
    private readonly store: EventStore<DomainEvent>,
    private readonly vault: PersonalDataVault,
  ) {}

  /**
   * Records the request in the log; the sender picks it up. Resolves once it is durable. The
   * link token is returned so the caller can store its hash with whatever the link grants.
   */
  async request(request: MailRequest): Promise<RequestedMail> {
    const template = mailTemplate(request.kind);
    if (!template) throw new Error(`unknown mail kind ${request.kind}`);
    const missing = template.params.filter((name) => typeof request.params[name] !== 'string');
    if (missing.length > 0) throw new Error(`mail ${request.kind} needs the parameters ${missing.join(', ')}`);
    const emailId = request.emailId ?? `em_${randomUUID().replaceAll('-', '')}`;
    const payloadCiphertext = await this.vault.encrypt(request.subject, JSON.stringify({ to: request.to, params: request.params }));
    const event: DomainEvent = {
      type: 'EmailRequested',
      data: { emailId, kind: request.kind, subject: request.subject, payloadCiphertext },
      metadata: eventMetadataFrom(request.metadata),
    };
    let position: AppendResult['lastPosition'] | null = null;
    try {
      position = (await this.store.appendToStream(emailStreamId(emailId), [{ id: deterministicEventId(emailId), event }], { expectedVersion: 'no_stream' }))
        .lastPosition;
    } catch (error) {
      // Requested before with this id: one email, not two.
      if (!(error instanceof VersionConflictError)) throw error;
    }
    const linkToken = await this.linkToken(emailId);
    return { emailId, linkToken, linkTokenHash: hashLinkToken(linkToken), position };
  }

  /** The token of an email's link: the same for every attempt, unguessable without the server secret. */
  async linkToken(emailId: string): Promise<string> {
    const secret = await this.linkSecret();
    return createHmac('sha256', secret).update(`mail-link|${emailId}`).digest('base64url');
  }

  private linkSecret(): Promise<Buffer> {
    this.secret ??= (async () => {
      const fresh = randomBytes(32).toString('base64url');
      // First instance to get here chooses it; every other reads the same one.
      await this.pool.query('INSERT INTO mail_link_secret (id, secret_ciphertext) VALUES (1, $1) ON CONFLICT (id) DO NOTHING', [
        await this.vault.encrypt(LINK_SECRET_SUBJECT, fresh),
      ]);
      const { rows } = await this.pool.query<{ secret_ciphertext: string }>('SELECT secret_ciphertext FROM mail_link_secret WHERE id = 1');
      const plain = await this.vault.decrypt(LINK_SECRET_SUBJECT, rows[0]!.secret_ciphertext);
      if (plain === null) throw new Error('the mail link secret is unreadable (its vault key was destroyed)');
      return Buffer.from(plain, 'base64url');
    })().catch((error) => {
      this.secret = undefined;
      throw error;
    });
    return this.secret;
  }
}

/** The event id of an email's request, so a retried append is recognised by the store too. */
function deterministicEventId(emailId: string): string {
  const h = createHash('sha256').update(`EmailRequested|${emailId}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

export interface MailSenderOptions {
  readonly from: string;
  /** the dashboard's public base URL for links, e.g. https://gateway.example.com */
  readonly publicUrl: () => string;
  readonly pollIntervalMs?: number;
  /** delay before the 2nd attempt; doubles for each one after, capped at an hour */
  readonly retryBaseMs?: number;
  readonly maxAttempts?: number;
}

interface DueMail {
  email_id: string;
  kind: string;
  subject: string;
  payload_ciphertext: string;
  attempts: number;
}

/**
 * The background worker that sends due outbox rows (one live instance at a time: the workers
 * role). Each pass sends what is due, oldest first.
 */
export class MailSender {
  private loop: PollLoop | undefined;

  constructor(
    private readonly pool: Pool,
    private readonly store: EventStore<DomainEvent>,
    private readonly vault: PersonalDataVault,
    private readonly outbox: MailOutbox,
    private readonly transport: MailTransport,
    private readonly log: Logger,
    private readonly options: MailSenderOptions,
  ) {}

  start(): void {
    this.loop = startPollLoop(() => this.sendDue(), {
      intervalMs: this.options.pollIntervalMs ?? 1_000,
      onError: (error) => this.log.error({ err: { name: (error as Error).name, message: (error as Error).message } }, 'mail outbox pass failed'),
    });
  }

  async stop(): Promise<void> {
    await this.loop?.stop();
  }

  /** One attempt for every due email; returns how many attempts were made. */
  async sendDue(limit = 20): Promise<number> {
    const { rows } = await this.pool.query<DueMail>(
      `SELECT email_id, kind, subject, payload_ciphertext, attempts FROM mail_outbox
        WHERE status = 'pending' AND next_attempt_at <= now() ORDER BY next_attempt_at, email_id LIMIT $1`,
      [limit],
    );
    for (const row of rows) await this.attempt(row);
    return rows.length;
  }

  private async attempt(row: DueMail): Promise<void> {
    const attempt = row.attempts + 1;
    const messageId = `<${row.email_id}@${hostOf(this.options.from)}>`;
    let failure: MailSendError | null = null;
    try {
      const template = mailTemplate(row.kind);
      if (!template) throw new MailSendError('unknown_kind', false);
      const plain = await this.vault.decrypt(row.subject, row.payload_ciphertext);
      // Erased since it was requested: there is nobody left to write to.
      if (plain === null) throw new MailSendError('recipient_erased', false);
      const payload = JSON.parse(plain) as { to: string; params: Record<string, string> };
      const link = template.linkPath
        ? `${this.options.publicUrl().replace(/\/$/, '')}${template.linkPath}?token=${await this.outbox.linkToken(row.email_id)}`
        : null;
      const rendered = template.render(payload.params, link);
      await this.transport.send({ messageId, from: this.options.from, to: payload.to, ...rendered });
    } catch (error) {
      failure = error instanceof MailSendError ? error : new MailSendError('send_failed', true);
    }
    const giveUp = failure !== null && (!failure.retryable || attempt >= (this.options.maxAttempts ?? MAX_MAIL_ATTEMPTS));
    const delayMs = Math.min((this.options.retryBaseMs ?? 30_000) * 2 ** (attempt - 1), 3_600_000);
    const status = failure === null ? 'sent' : giveUp ? 'abandoned' : 'pending';
    await this.pool.query(
      `UPDATE mail_outbox SET attempts = $2, status = $3, last_error = $4,
              next_attempt_at = now() + $5 * interval '1 millisecond', sent_at = CASE WHEN $3 = 'sent' THEN now() ELSE sent_at END
        WHERE email_id = $1 AND attempts = $6`,
      [row.email_id, attempt, status, failure?.code ?? null, delayMs, row.attempts],
    );
    if (failure !== null) {
      this.log.warn({ emailId: row.email_id, kind: row.kind, attempt, error: failure.code, gaveUp: giveUp }, 'email not sent');
    } else {
      this.log.info({ emailId: row.email_id, kind: row.kind, attempt, transport: this.transport.kind }, 'email sent');
    }
    if (status === 'pending') return;
    // The record in the log (a replayed outbox then knows not to send it again).
    const event: DomainEvent =
      status === 'sent'
        ? {
            type: 'EmailSent',
            data: { emailId: row.email_id, messageId, attempts: attempt, transport: this.transport.kind },
            metadata: eventMetadataFrom(systemMetadata('mail-outbox')),
          }
        : {
            type: 'EmailAbandoned',
            data: { emailId: row.email_id, attempts: attempt, reason: failure!.code },
            metadata: eventMetadataFrom(systemMetadata('mail-outbox')),
          };
    try {
      await this.store.appendToStream(emailStreamId(row.email_id), [{ id: randomUUID(), event }], { expectedVersion: 0n });
    } catch (error) {
      // Another holder of the workers role recorded it first (a brief overlap at takeover).
      if (!(error instanceof VersionConflictError)) throw error;
    }
  }
}

function hostOf(from: string): string {
  const match = /@([A-Za-z0-9.-]+)>?\s*$/.exec(from);
  return match?.[1] ?? 'tollgate.local';
}

/** How an email stands, for tests and the operator: never its content. */
export async function mailStatus(pool: Pool, emailId: string): Promise<{ status: string; attempts: number; lastError: string | null } | null> {
  const { rows } = await pool.query<{ status: string; attempts: number; last_error: string | null }>(
    'SELECT status, attempts, last_error FROM mail_outbox WHERE email_id = $1',
    [emailId],
  );
  const row = rows[0];
  return row ? { status: row.status, attempts: row.attempts, lastError: row.last_error } : null;
}
