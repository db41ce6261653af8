import type { Pool } from 'pg';
import type { Logger } from 'pino';
import { accountStreamId } from '../../domain/account';
import { isEssential, type NoticeKind } from '../../domain/notice';
import { systemMetadata } from '../command-metadata';
import { currentPersonalDataCiphertexts, readPersonalField } from '../compliance/personal-data';
import type { DomainEvent } from '../../domain/events';
import type { EventStore } from '../ports/event-store';
import type { MailOutbox } from '../mail/outbox';
import type { PersonalDataVault } from '../ports/personal-data-vault';
import { startPollLoop, type PollLoop } from '../process-managers/poll-loop';

/** A notice older than this when the mailer first meets it is not mailed (e.g. past events replayed into a new read model). */
export const MAIL_NOTICES_NEWER_THAN_MS = 2 * 86_400_000;

/**
 * Emails each notice to each account it is for, at the account's contact address, through the
 * mail outbox (src/mail/outbox.ts), on the one instance holding the workers role. Once per notice
 * and account: the email id derives from both (the outbox makes one email per id), and
 * `notice_mailings` records it after the request, so a crash in between requests the same email
 * again and the outbox drops the repeat. A kind the account turned off (never an essential one)
 * is recorded as skipped. Recipients: the account's contact address and each of its members
 * (src/identity users) with a verified address, one email per address and notice (the email id
 * adds the member's user id); a member's own opt-outs spare that member only. Essential kinds go to
 * every recipient. A closed or erased account is mailed nothing.
 */
export class NoticeMailer {
  private loop: PollLoop | undefined;

  constructor(
    private readonly deps: { pool: Pool; store: EventStore<DomainEvent>; vault: PersonalDataVault; outbox: MailOutbox; log: Logger; clock: () => Date },
    private readonly intervalMs: number,
  ) {}

  start(): void {
    this.loop = startPollLoop(() => this.runOnce().then(() => undefined), {
      intervalMs: this.intervalMs,
      onError: (error) => this.deps.log.error({ err: { name: (error as Error).name, message: (error as Error).message } }, 'notice mailing failed'),
    });
  }

  async stop(): Promise<void> {
    await this.loop?.stop();
    this.loop = undefined;
  }

  /** One pass; returns how many emails it requested and how many it skipped. */
  async runOnce(limit = 200): Promise<{ requested: number; skipped: number }> {
    const now = this.deps.clock();
    // Notices for named accounts, and notices for every account to each account opened before it.
    const { rows } = await this.deps.pool.query<{ notice_id: string; kind: NoticeKind; subject: string; body: string; account_id: string; published_at: Date }>(
      `SELECT n.notice_id, n.kind, n.subject, n.body, a.account_id, n.published_at
         FROM notices n
         CROSS JOIN LATERAL (
           SELECT unnest(n.account_ids) AS account_id WHERE n.account_ids IS NOT NULL
           UNION
           SELECT b.account_id FROM balances b WHERE n.account_ids IS NULL
         ) a
        WHERE NOT EXISTS (SELECT 1 FROM notice_mailings m WHERE m.notice_id = n.notice_id AND m.account_id = a.account_id)
        ORDER BY n.seq
        LIMIT $1`,
      [limit],
    );
    let requested = 0;
    let skipped = 0;
    for (const row of rows) {
      const skip = await this.reasonToSkip(row, now);
      if (skip) {
        await this.record(row.notice_id, row.account_id, null, skip);
        skipped++;
        continue;
      }
      const recipients = await this.recipientsOf(row.account_id, row.kind);
      const base = `notice-${row.notice_id}-${row.account_id}`;
      const chosen = recipients.filter((r) => !r.optedOut);
      for (const recipient of chosen) {
        // The contact's email id is the one the account always had; a member's adds their user id.
        const emailId = (recipient.userId === null ? base : `${base}-${recipient.userId}`).replace(/[^A-Za-z0-9_.:-]/g, '_');
        await this.deps.outbox.request({
          kind: 'notice',
          to: recipient.address,
          subject: row.account_id,
          params: { subject: row.subject, body: `${row.body}\n\nYou can see every notice in the dashboard, and choose which non-essential ones you receive.` },
          emailId,
          metadata: { ...systemMetadata('notice-mailer'), now: now.toISOString() },
        });
        requested++;
      }
      const contactMail = chosen.find((r) => r.userId === null);
      const reason = recipients.length === 0 ? 'no_contact' : chosen.length === 0 ? 'opted_out' : null;
      await this.record(row.notice_id, row.account_id, chosen.length > 0 ? (contactMail ? base : `${base}-members`) : null, reason);
      if (reason !== null) skipped++;
    }
    return { requested, skipped };
  }

  private async reasonToSkip(row: { kind: NoticeKind; account_id: string; published_at: Date }, now: Date): Promise<string | null> {
    if (now.getTime() - row.published_at.getTime() > MAIL_NOTICES_NEWER_THAN_MS) return 'too_old';
    if (isEssential(row.kind)) return null;
    const { rows } = await this.deps.pool.query('SELECT 1 FROM notice_preferences WHERE account_id = $1 AND kind = $2 AND NOT enabled', [
      row.account_id,
      row.kind,
    ]);
    return rows.length > 0 ? 'opted_out' : null;
  }

  /**
   * Who of the account is mailed: its contact address and every member with a verified address,
   * one email per address. An address that is a member's follows that member's own choices (a
   * member who is also the contact is one recipient, a person); the contact of an account with no
   * such member is always mailed (the account's own choice was checked before).
   */
  private async recipientsOf(accountId: string, kind: NoticeKind): Promise<{ address: string; userId: string | null; optedOut: boolean }[]> {
    const byAddress = new Map<string, { address: string; userId: string | null; optedOut: boolean }>();
    const { rows } = await this.deps.pool.query<{ user_id: string; email_ciphertext: string; opted_out: boolean }>(
      `SELECT c.user_id, c.email_ciphertext,
              EXISTS (SELECT 1 FROM notice_user_preferences p WHERE p.user_id = c.user_id AND p.kind = $2 AND NOT p.enabled) AS opted_out
         FROM memberships m JOIN user_credentials c ON c.user_id = m.user_id
        WHERE m.account_id = $1 AND c.email_verified_at IS NOT NULL
        ORDER BY m.since, m.user_id`,
      [accountId, kind],
    );
    for (const member of rows) {
      const address = await this.deps.vault.decrypt(member.user_id, member.email_ciphertext);
      if (address === null) continue;
      byAddress.set(address.toLowerCase(), { address, userId: member.user_id, optedOut: !isEssential(kind) && member.opted_out });
    }
    const contact = await this.contactOf(accountId);
    if (contact === 'closed') return [];
    if (contact !== null && !byAddress.has(contact.toLowerCase())) byAddress.set(contact.toLowerCase(), { address: contact, userId: null, optedOut: false });
    return [...byAddress.values()];
  }

  private async contactOf(accountId: string): Promise<string | null | 'closed'> {
    const { events } = await this.deps.store.readStream(accountStreamId(accountId));
    const domainEvents = events.map((e) => e.event);
    // A closed account is told nothing more by email; an erased one has no address left.
    if (domainEvents.some((e) => e.type === 'AccountClosed' || e.type === 'PersonalDataErased')) return 'closed';
    const ciphertexts = currentPersonalDataCiphertexts(domainEvents);
    return ciphertexts ? readPersonalField(this.deps.vault, accountId, ciphertexts.emailCiphertext) : null;
  }

  private async record(noticeId: string, accountId: string, emailId: string | null, skipped: string | null): Promise<void> {
    await this.deps.pool.query('INSERT INTO notice_mailings (notice_id, account_id, email_id, skipped) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING', [
      noticeId,
      accountId,
      emailId,
      skipped,
    ]);
  }
}
