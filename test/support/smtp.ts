import type { AddressInfo } from 'node:net';
import { simpleParser, type ParsedMail } from 'mailparser';
import { SMTPServer } from 'smtp-server';
import { until } from './wait';

/** One message the test SMTP server accepted, parsed by mailparser. */
export interface ReceivedMail {
  readonly to: string;
  readonly from: string;
  readonly subject: string;
  readonly messageId: string;
  readonly text: string;
  readonly html: string;
  readonly raw: string;
  readonly parsed: ParsedMail;
}

/**
 * A real SMTP server (the `smtp-server` package) on a free loopback port, for tests: the gateway
 * sends to `url` (SMTP_URL) and the test reads what arrived. `refuseNext(n)` answers the next n
 * messages with a temporary failure (451), as a busy server does, to exercise the outbox's retries.
 */
export class TestSmtpServer {
  readonly received: ReceivedMail[] = [];
  /** every DATA command, accepted or refused, in order */
  attempts = 0;
  private refusals = 0;
  private server: SMTPServer | undefined;
  url = '';

  async start(): Promise<this> {
    this.server = new SMTPServer({
      authOptional: true,
      disabledCommands: ['STARTTLS'],
      logger: false,
      onData: (stream, _session, callback) => {
        const chunks: Buffer[] = [];
        stream.on('data', (chunk: Buffer) => chunks.push(chunk));
        stream.on('end', () => {
          this.attempts++;
          if (this.refusals > 0) {
            this.refusals--;
            const error = Object.assign(new Error('Try again later'), { responseCode: 451 });
            callback(error);
            return;
          }
          const raw = Buffer.concat(chunks).toString('utf8');
          simpleParser(raw).then(
            (parsed) => {
              this.received.push({
                to: addressText(parsed.to),
                from: addressText(parsed.from),
                subject: parsed.subject ?? '',
                messageId: parsed.messageId ?? '',
                text: parsed.text ?? '',
                html: typeof parsed.html === 'string' ? parsed.html : '',
                raw,
                parsed,
              });
              callback();
            },
            (error: Error) => callback(error),
          );
        });
      },
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    const { port } = this.server.server.address() as AddressInfo;
    this.url = `smtp://127.0.0.1:${port}`;
    return this;
  }

  /** The next `n` messages are refused with 451 (temporary): a sender must retry them. */
  refuseNext(n: number): void {
    this.refusals = n;
  }

  /** Messages to `address`, oldest first. */
  to(address: string): ReceivedMail[] {
    return this.received.filter((m) => m.to.toLowerCase() === address.toLowerCase());
  }

  /** Waits until `count` messages to `address` have arrived and returns the latest. */
  async waitFor(address: string, count = 1): Promise<ReceivedMail> {
    return until(
      () => {
        const mails = this.to(address);
        return mails.length >= count ? mails[mails.length - 1] : undefined;
      },
      { what: `${count} email(s) to ${address}` },
    );
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

function addressText(address: ParsedMail['to'] | ParsedMail['from']): string {
  if (!address) return '';
  const list = Array.isArray(address) ? address : [address];
  return list
    .flatMap((a) => a.value.map((v) => v.address ?? ''))
    .filter(Boolean)
    .join(', ');
}

/** The token of the dashboard link in a mail (`...#/verify?token=...`). */
export function linkTokenIn(mail: { text: string }): string {
  const match = /[#/][a-z-]+\?token=([A-Za-z0-9_-]+)/.exec(mail.text);
  if (!match) throw new Error('no link with a token in this mail');
  return match[1]!;
}
