import { formatUsd } from '../../domain/money';
import type { DomainEvent } from '../../domain/events';
import type { NoticeKind } from '../../domain/notice';

/** One notice as the read model keeps it; `accountIds` null means every account. */
export interface NoticeRow {
  readonly noticeId: string;
  readonly kind: NoticeKind;
  readonly accountIds: readonly string[] | null;
  readonly subject: string;
  readonly body: string;
  readonly effectiveAt: string;
  readonly endsAt: string | null;
  readonly about: string | null;
  readonly publishedAt: string;
}

const ACCOUNT_PREFIX = 'account-';
/** an account's members stream (domain/user), not an account stream */
const MEMBERS_PREFIX = 'account-members-';

const SUSPENSION_WORDS: Record<string, string> = {
  negative_balance: 'the balance is negative; a top-up that settles it lifts the suspension',
  auto_top_up_failed: 'an automatic top-up failed; a top-up lifts the suspension',
  payment_dispute: 'a card payment is disputed',
};

/**
 * The notice an event makes, if any. Announcements are NoticePublished; operational notices
 * mirror the account events the webhooks and emails of those facts come from: suspension,
 * refund, auto top-up receipt and failure. Their ids derive from the event, so a replay makes
 * the same rows.
 */
export function noticeOf(streamId: string, eventId: string, event: DomainEvent): NoticeRow | null {
  const at = event.metadata.occurredAt;
  const accountId = streamId.startsWith(ACCOUNT_PREFIX) && !streamId.startsWith(MEMBERS_PREFIX) ? streamId.slice(ACCOUNT_PREFIX.length) : null;
  const operational = (kind: NoticeKind, subject: string, body: string): NoticeRow | null =>
    accountId === null
      ? null
      : { noticeId: `${kind}-${eventId}`, kind, accountIds: [accountId], subject, body, effectiveAt: at, endsAt: null, about: null, publishedAt: at };
  switch (event.type) {
    case 'NoticePublished': {
      const d = event.data;
      return {
        noticeId: d.noticeId,
        kind: d.kind,
        accountIds: d.audience.kind === 'all' ? null : [...d.audience.accountIds],
        subject: d.subject,
        body: d.body,
        effectiveAt: d.effectiveAt,
        endsAt: d.endsAt,
        about: d.about,
        publishedAt: at,
      };
    }
    case 'AccountSuspended':
      return operational(
        'suspension',
        'Your account is suspended',
        `Requests are refused until the suspension is lifted: ${SUSPENSION_WORDS[event.data.reason] ?? event.data.reason.replaceAll('_', ' ')}.`,
      );
    case 'RefundIssued':
      return operational(
        'refund',
        `Refund of $${formatUsd(event.data.amount)} issued`,
        `$${formatUsd(event.data.amount)} of purchased credit is on its way back to your card.`,
      );
    case 'TopUpCompleted':
      if (event.data.autoTopUpAttemptId === null) return null;
      return operational(
        'auto_top_up_receipt',
        `Automatic top-up of $${formatUsd(event.data.amount)} received`,
        `Your balance fell below its threshold and was topped up by $${formatUsd(event.data.amount)} (payment ${event.data.paymentReference}).`,
      );
    case 'AutoTopUpFailed':
      return operational(
        'auto_top_up_failed',
        'Automatic top-up failed',
        `An automatic top-up could not be charged (${event.data.reason.replaceAll('_', ' ')}). Check the saved card, or top up by hand.`,
      );
    default:
      return null;
  }
}
