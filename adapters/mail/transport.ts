import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { MailSendError, type MailTransport, type OutgoingMail } from '../../src/ports/mail-transport';

/**
 * SMTP through nodemailer when `smtpUrl` is set (smtp://user:pass@host:587, smtps://...); without
 * it each message is written to `<dataDir>/outbox/<message id>.eml`, a complete RFC 5322 message
 * any mail client opens. The file name comes from the Message-ID, so a resend overwrites the same
 * file instead of adding a second one.
 */
export function createMailTransport(options: { smtpUrl?: string | undefined; dataDir: string }): MailTransport {
  if (options.smtpUrl) return smtpTransport(options.smtpUrl);
  return fileTransport(join(options.dataDir, 'outbox'));
}

function message(mail: OutgoingMail) {
  return { messageId: mail.messageId, from: mail.from, to: mail.to, subject: mail.subject, text: mail.text, html: mail.html };
}

function smtpTransport(url: string): MailTransport {
  const transporter = nodemailer.createTransport(url);
  const host = (() => {
    try {
      const parsed = new URL(url);
      return `${parsed.protocol}//${parsed.host}`;
    } catch {
      return 'SMTP';
    }
  })();
  return {
    kind: 'smtp',
    describe: host,
    async send(mail) {
      try {
        await transporter.sendMail(message(mail));
      } catch (error) {
        const e = error as { code?: string; responseCode?: number };
        // 5xx on the recipient is permanent; anything else (connection, 4xx) may pass later.
        const permanent = typeof e.responseCode === 'number' && e.responseCode >= 500 && e.code === 'EENVELOPE';
        throw new MailSendError(e.responseCode ? `smtp_${e.responseCode}` : (e.code ?? 'smtp_error').toLowerCase(), !permanent);
      }
    },
    close: () => transporter.close(),
  };
}

function fileTransport(dir: string): MailTransport {
  const transporter = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'unix' });
  // There from the start, so the folder the banner names exists before the first email.
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return {
    kind: 'file',
    describe: dir,
    async send(mail) {
      let raw: Buffer;
      try {
        raw = (await transporter.sendMail(message(mail))).message as Buffer;
      } catch {
        throw new MailSendError('render_failed', false);
      }
      try {
        mkdirSync(dir, { recursive: true, mode: 0o700 });
        const name = mail.messageId.replace(/^<|>$/g, '').replace(/[^A-Za-z0-9._-]/g, '_');
        const file = join(dir, `${name}.eml`);
        // Whole or not at all: a reader never sees half a message.
        writeFileSync(`${file}.tmp`, raw, { mode: 0o600 });
        renameSync(`${file}.tmp`, file);
      } catch (error) {
        throw new MailSendError(((error as NodeJS.ErrnoException).code ?? 'write_failed').toLowerCase(), true);
      }
    },
    close: () => transporter.close(),
  };
}
