/**
 * The emails Tollgate sends, by kind. A template is rendered when the email is sent, from the
 * parameters given when it was requested (kept encrypted in the log) and, for a kind with a link,
 * the link whose token the outbox derives from the email id. To add a kind: add an entry here and
 * request it with MailOutbox.request (src/mail/outbox.ts).
 *
 * Parameters are strings; everything shown in HTML is escaped here.
 */

export interface RenderedMail {
  readonly subject: string;
  readonly text: string;
  readonly html: string;
}

export interface MailTemplate {
  /**
   * Where the link points, under the public URL; the token goes in the fragment
   * (`<public url><linkPath>?token=...` inside the `#`), which browsers never send to a server,
   * so it reaches no access log. Absent for an email without a link.
   */
  readonly linkPath?: string;
  /** parameters the template needs; a request without them is refused when it is made */
  readonly params: readonly string[];
  render(params: Readonly<Record<string, string>>, link: string | null): RenderedMail;
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

function page(paragraphs: readonly string[], link: string | null, linkLabel: string): string {
  const body = paragraphs.map((p) => `<p>${escapeHtml(p)}</p>`).join('\n');
  const button = link ? `<p><a href="${escapeHtml(link)}">${escapeHtml(linkLabel)}</a></p>` : '';
  return `<!doctype html><html><body>${body}\n${button}</body></html>`;
}

function linkMail(subject: string, paragraphs: readonly string[], linkLabel: string, after: readonly string[] = []) {
  return (link: string | null): RenderedMail => ({
    subject,
    text: [...paragraphs, '', `${linkLabel}: ${link ?? ''}`, '', ...after].join('\n'),
    html: page([...paragraphs], link, linkLabel) + (after.length ? page(after, null, '') : ''),
  });
}

export const MAIL_TEMPLATES = {
  /** the address given at sign-up (or a new address on the profile) must be confirmed */
  email_verification: {
    linkPath: '/dashboard/#/verify',
    params: ['name'],
    render: (p, link) =>
      linkMail(
        'Confirm your email address for Tollgate',
        [`Hello ${p['name']},`, 'Please confirm this email address by opening the link below. It is valid for 24 hours and works once.'],
        'Confirm my email address',
        ['If you did not sign up for Tollgate, ignore this email: nothing happens without the link.'],
      )(link),
  },
  password_reset: {
    linkPath: '/dashboard/#/reset',
    params: ['name'],
    render: (p, link) =>
      linkMail(
        'Reset your Tollgate password',
        [`Hello ${p['name']},`, 'Someone asked to reset the password of your Tollgate account. The link below is valid for 1 hour and works once.'],
        'Choose a new password',
        ['If it was not you, ignore this email: your password stays as it is.'],
      )(link),
  },
  invitation: {
    linkPath: '/dashboard/#/accept-invitation',
    params: ['account_name', 'role', 'inviter'],
    render: (p, link) =>
      linkMail(
        `You are invited to ${p['account_name']} on Tollgate`,
        [`${p['inviter']} invited you to join ${p['account_name']} on Tollgate as ${p['role']}.`, 'The invitation is valid for 7 days and works once.'],
        'Accept the invitation',
      )(link),
  },
  /** a plain notice (no link): subject and body given by the requester, e.g. service notices */
  notice: {
    params: ['subject', 'body'],
    render: (p) => ({ subject: p['subject']!, text: p['body']!, html: page(p['body']!.split(/\n{2,}/), null, '') }),
  },
} satisfies Record<string, MailTemplate>;

export type MailKind = keyof typeof MAIL_TEMPLATES;

export function mailTemplate(kind: string): MailTemplate | undefined {
  return Object.hasOwn(MAIL_TEMPLATES, kind) ? (MAIL_TEMPLATES as Record<string, MailTemplate>)[kind] : undefined;
}
