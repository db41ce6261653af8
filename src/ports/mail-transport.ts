/**
 * Where the outbox hands a rendered email: SMTP (nodemailer, `SMTP_URL`) or, on the embedded
 * default, `.eml` files under the data dir. Implemented in adapters/mail; the composition root
 * picks one. `send` resolves once the message is accepted (by the SMTP server, or written);
 * sending the same messageId again must be harmless (the outbox sends at least once).
 */
export interface OutgoingMail {
  /** the Message-ID header, `<...@...>`: the same on every attempt of one email */
  readonly messageId: string;
  readonly from: string;
  readonly to: string;
  readonly subject: string;
  readonly text: string;
  readonly html: string;
}

export interface MailTransport {
  readonly kind: 'smtp' | 'file';
  /** for the log and the first-run banner: the SMTP host, or the folder the files go to */
  readonly describe: string;
  send(mail: OutgoingMail): Promise<void>;
  close(): void;
}

/** A failed send, with a code safe to log and store (never the server's text, which may quote the address). */
export class MailSendError extends Error {
  override readonly name = 'MailSendError';
  constructor(
    readonly code: string,
    /** false when retrying cannot help (e.g. the server refused the recipient outright with a 5xx) */
    readonly retryable: boolean,
  ) {
    super(`mail not sent: ${code}`);
  }
}
