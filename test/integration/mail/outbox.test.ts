import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { simpleParser } from 'mailparser';
import { Pool } from 'pg';
import { systemMetadata } from '../../../src/command-metadata';
import { hashLinkToken, mailStatus } from '../../../src/mail/outbox';
import { startTestGateway, type TestGateway } from '../../support/gateway';
import { TestSmtpServer, linkTokenIn } from '../../support/smtp';
import { until } from '../../support/wait';

const MODELS = [{ id: 'm', upstreams: [{ baseUrl: 'http://127.0.0.1:9/v1', capacity: 1 }], maxOutputTokens: 10, operations: ['chat' as const] }];
const FAST_MAIL = { TOLLGATE_MAIL_POLL_INTERVAL_S: '0.05', TOLLGATE_MAIL_RETRY_BASE_S: '0.05', TOLLGATE_PUBLIC_URL: 'https://gateway.example.test' };

describe('mail outbox over real SMTP', () => {
  const smtp = new TestSmtpServer();
  let gw: TestGateway;
  let pool: Pool;

  beforeAll(async () => {
    await smtp.start();
    gw = await startTestGateway({ models: MODELS, env: { ...FAST_MAIL, SMTP_URL: smtp.url } });
    pool = new Pool({ connectionString: gw.databaseUrl, max: 2 });
  });

  afterAll(async () => {
    await pool?.end();
    await gw?.stop();
    await smtp.stop();
  });

  const request = (to: string, emailId?: string) =>
    gw.gateway.mail.request({
      kind: 'email_verification',
      to,
      subject: 'usr_outbox_test',
      params: { name: 'Ada <Lovelace>' },
      ...(emailId && { emailId }),
      metadata: systemMetadata('test'),
    });

  it('sends a requested email once, with its Message-ID and a link whose token only the hash of is kept', async () => {
    const requested = await request('ada@example.test');
    const mail = await smtp.waitFor('ada@example.test');
    expect(mail.subject).toBe('Confirm your email address for Tollgate');
    expect(mail.messageId).toBe(`<${requested.emailId}@tollgate.local>`);
    expect(mail.text).toContain('Hello Ada <Lovelace>,');
    // escaped in HTML: a name cannot inject markup
    expect(mail.html).toContain('Ada &lt;Lovelace&gt;');
    expect(mail.text).toContain('https://gateway.example.test/dashboard/#/verify?token=');
    const token = linkTokenIn(mail);
    expect(token).toBe(requested.linkToken);
    expect(hashLinkToken(token)).toBe(requested.linkTokenHash);
    await until(async () => ((await mailStatus(pool, requested.emailId))?.status === 'sent' ? true : undefined), { what: 'the row marked sent' });
    // The log holds neither the token, its hash, the address nor the name.
    const { rows } = await pool.query<{ type: string; doc: string }>(`SELECT type, data::text || metadata::text AS doc FROM events WHERE stream_id = $1`, [
      `email-${requested.emailId}`,
    ]);
    await until(
      async () =>
        (await pool.query(`SELECT 1 FROM events WHERE stream_id = $1 AND type = 'EmailSent'`, [`email-${requested.emailId}`])).rowCount ? true : undefined,
      {
        what: 'EmailSent in the log',
      },
    );
    expect(rows.map((r) => r.type)).toContain('EmailRequested');
    const all = (await pool.query<{ doc: string }>('SELECT data::text || metadata::text AS doc FROM events')).rows.map((r) => r.doc).join('\n');
    for (const secret of [token, requested.linkTokenHash, 'ada@example.test', 'Lovelace']) expect(all).not.toContain(secret);
    expect(gw.logLines.join('\n')).not.toContain(token);
    expect(gw.logLines.join('\n')).not.toContain('ada@example.test');
    expect(smtp.to('ada@example.test')).toHaveLength(1);
  });

  it('the same email id requested twice sends one email', async () => {
    const first = await request('twice@example.test', 'em_same_twice');
    const second = await request('twice@example.test', 'em_same_twice');
    expect(second.linkToken).toBe(first.linkToken);
    await smtp.waitFor('twice@example.test');
    await until(async () => ((await mailStatus(pool, 'em_same_twice'))?.status === 'sent' ? true : undefined));
    // A later email is sent after it; by then a second copy would have gone too.
    await request('after-twice@example.test');
    await smtp.waitFor('after-twice@example.test');
    expect(smtp.to('twice@example.test')).toHaveLength(1);
  });

  it('retries with backoff when the server refuses, with the same Message-ID and link, and records the attempts', async () => {
    const before = smtp.attempts;
    smtp.refuseNext(2);
    const requested = await request('busy@example.test');
    const mail = await smtp.waitFor('busy@example.test');
    expect(smtp.attempts - before).toBe(3);
    expect(mail.messageId).toBe(`<${requested.emailId}@tollgate.local>`);
    expect(linkTokenIn(mail)).toBe(requested.linkToken);
    const status = await until(async () => {
      const s = await mailStatus(pool, requested.emailId);
      return s?.status === 'sent' ? s : undefined;
    });
    expect(status.attempts).toBe(3);
    const sent = await until(async () => {
      const { rows } = await pool.query<{ data: { attempts: number } }>(`SELECT data FROM events WHERE stream_id = $1 AND type = 'EmailSent'`, [
        `email-${requested.emailId}`,
      ]);
      return rows[0];
    });
    expect(sent.data.attempts).toBe(3);
    const warnings = gw.logLines.filter((l) => l.includes('email not sent') && l.includes(requested.emailId));
    expect(warnings).toHaveLength(2);
    expect(warnings.join('\n')).toContain('smtp_451');
  });

  it('a send whose outcome was lost (crash before it was marked) goes again with the same Message-ID, so the receiver can drop the copy', async () => {
    const requested = await request('lost@example.test');
    const first = await smtp.waitFor('lost@example.test');
    await until(async () => ((await mailStatus(pool, requested.emailId))?.status === 'sent' ? true : undefined));
    // The outbox subscriber also marks the row sent when it reads EmailSent; wait until it has, or it
    // would undo the "lost outcome" below.
    await until(
      async () =>
        (
          await pool.query(
            `SELECT 1 FROM events e JOIN checkpoints c ON c.name = 'mail-outbox'
              WHERE e.stream_id = $1 AND e.type = 'EmailSent'
                AND (c.tx, c.seq) >= (e.transaction_id::text::numeric, e.global_seq::numeric)`,
            [`email-${requested.emailId}`],
          )
        ).rowCount
          ? true
          : undefined,
      { what: 'the outbox subscriber to read EmailSent' },
    );
    await pool.query(`UPDATE mail_outbox SET status = 'pending', next_attempt_at = now() WHERE email_id = $1`, [requested.emailId]);
    const second = await smtp.waitFor('lost@example.test', 2);
    expect(second.messageId).toBe(first.messageId);
    expect(linkTokenIn(second)).toBe(linkTokenIn(first));
  });

  it('two gateways over one database send each email once (the workers role), whichever took the request', async () => {
    const second = await startTestGateway({ models: MODELS, databaseUrl: gw.databaseUrl, env: { ...FAST_MAIL, SMTP_URL: smtp.url } });
    try {
      expect([gw.gateway.instance.runsWorkers, second.gateway.instance.runsWorkers].filter(Boolean)).toHaveLength(1);
      const addresses = Array.from({ length: 6 }, (_, i) => `pair${i}@example.test`);
      const requested = await Promise.all(
        addresses.map((to, i) =>
          (i % 2 ? second : gw).gateway.mail.request({
            kind: 'email_verification',
            to,
            subject: 'usr_pair',
            params: { name: 'P' },
            metadata: systemMetadata('test'),
          }),
        ),
      );
      for (const to of addresses) await smtp.waitFor(to);
      for (const r of requested) await until(async () => ((await mailStatus(pool, r.emailId))?.status === 'sent' ? true : undefined));
      // A late second copy would be sent in the next pass; one more email after them shows the passes went on.
      await request('pair-after@example.test');
      await smtp.waitFor('pair-after@example.test');
      for (const to of addresses) expect(smtp.to(to)).toHaveLength(1);
    } finally {
      await second.stop();
    }
  });

  it('an email whose subject was erased before it went is abandoned, not sent', async () => {
    // A request made before the erasure: its payload encrypted under the key that is then destroyed.
    const payloadCiphertext = await gw.gateway.vault.encrypt('usr_erased', JSON.stringify({ to: 'erased@example.test', params: { name: 'X' } }));
    await gw.gateway.vault.destroyKey('usr_erased');
    await gw.gateway.store.appendToStream(
      'email-em_erased',
      [
        {
          id: randomUUID(),
          event: {
            type: 'EmailRequested',
            data: { emailId: 'em_erased', kind: 'email_verification', subject: 'usr_erased', payloadCiphertext },
            metadata: { ...systemMetadata('test'), occurredAt: new Date().toISOString() },
          },
        },
      ],
      { expectedVersion: 'no_stream' },
    );
    const status = await until(async () => {
      const s = await mailStatus(pool, 'em_erased');
      return s?.status === 'pending' || s === null ? undefined : s;
    });
    expect(status).toEqual({ status: 'abandoned', attempts: 1, lastError: 'recipient_erased' });
    await until(async () =>
      (await pool.query(`SELECT 1 FROM events WHERE stream_id = 'email-em_erased' AND type = 'EmailAbandoned'`)).rowCount ? true : undefined,
    );
    expect(smtp.to('erased@example.test')).toHaveLength(0);
  });
});

describe('mail outbox without SMTP (the embedded default)', () => {
  let gw: TestGateway;

  beforeAll(async () => {
    gw = await startTestGateway({ models: MODELS, env: FAST_MAIL });
  });

  afterAll(async () => {
    await gw?.stop();
  });

  it('writes each email as a .eml file under the data dir, named by its Message-ID', async () => {
    const requested = await gw.gateway.mail.request({
      kind: 'password_reset',
      to: 'file@example.test',
      subject: 'usr_file_test',
      params: { name: 'Grace' },
      metadata: systemMetadata('test'),
    });
    expect(gw.gateway.mailTransport.kind).toBe('file');
    const dir = gw.gateway.mailTransport.describe;
    expect(dir).toBe(join(gw.gateway.config.TOLLGATE_DATA_DIR, 'outbox'));
    const file = await until(() => readdirSync(dir, { withFileTypes: true }).find((f) => f.name === `${requested.emailId}_tollgate.local.eml`)?.name, {
      what: 'the .eml file',
    });
    const parsed = await simpleParser(readFileSync(join(dir, file)));
    expect(parsed.subject).toBe('Reset your Tollgate password');
    expect(parsed.messageId).toBe(`<${requested.emailId}@tollgate.local>`);
    expect(parsed.text).toContain(`https://gateway.example.test/dashboard/#/reset?token=${requested.linkToken}`);
  });
});
