import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Stripe from 'stripe';

/**
 * A local stand-in for the one Stripe endpoint auto top-up uses, POST /v1/payment_intents,
 * answering as Stripe documents: the same Idempotency-Key replays the first answer (and
 * creates nothing), and a customer can be told to decline (`card_declined`) or to need
 * authentication (`authentication_required`, which off-session nobody can give).
 */
export interface PaymentIntentRequest {
  readonly idempotencyKey: string | undefined;
  readonly params: Record<string, string>;
}

export class StripeStandIn {
  readonly requests: PaymentIntentRequest[] = [];
  /** every PaymentIntent actually created (replays excluded) */
  readonly created: { id: string; amount: number; customer: string; metadata: Record<string, string> }[] = [];
  private readonly declines = new Map<string, 'card_declined' | 'authentication_required'>();
  private readonly replies = new Map<string, { status: number; body: string }>();
  private server: Server | undefined;
  port = 0;

  declineFor(customerId: string, code: 'card_declined' | 'authentication_required'): void {
    this.declines.set(customerId, code);
  }

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      let raw = '';
      req.on('data', (chunk: Buffer) => (raw += chunk.toString('utf8')));
      req.on('end', () => {
        const reply = (status: number, body: string) => {
          res.writeHead(status, { 'content-type': 'application/json', 'request-id': `req_${randomBytes(6).toString('hex')}` });
          res.end(body);
        };
        if (req.method !== 'POST' || req.url !== '/v1/payment_intents') return reply(404, JSON.stringify({ error: { type: 'invalid_request_error', message: 'Unrecognized request URL' } }));
        const params = Object.fromEntries(new URLSearchParams(raw));
        const key = req.headers['idempotency-key'] as string | undefined;
        this.requests.push({ idempotencyKey: key, params });
        const replay = key === undefined ? undefined : this.replies.get(key);
        if (replay) return reply(replay.status, replay.body);
        const metadata: Record<string, string> = {};
        for (const [name, value] of Object.entries(params)) {
          const m = /^metadata\[(.+)\]$/.exec(name);
          if (m) metadata[m[1]!] = value;
        }
        const customer = params['customer']!;
        const id = `pi_${randomBytes(8).toString('hex')}`;
        const decline = this.declines.get(customer);
        const intent = {
          id,
          object: 'payment_intent',
          amount: Number(params['amount']),
          currency: params['currency'],
          customer,
          payment_method: params['payment_method'],
          status: decline ? 'requires_payment_method' : 'succeeded',
          metadata,
        };
        let answer: { status: number; body: string };
        if (decline) {
          answer = {
            status: 402,
            body: JSON.stringify({
              error: {
                type: 'card_error',
                code: decline,
                decline_code: decline === 'card_declined' ? 'generic_decline' : 'authentication_required',
                message: decline === 'card_declined' ? 'Your card was declined.' : 'This payment requires authentication.',
                payment_intent: intent,
              },
            }),
          };
        } else {
          this.created.push({ id, amount: intent.amount, customer, metadata });
          answer = { status: 200, body: JSON.stringify(intent) };
        }
        if (key !== undefined) this.replies.set(key, answer);
        reply(answer.status, answer.body);
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  client(): Stripe {
    return new Stripe('sk_test_standin', { host: '127.0.0.1', port: this.port, protocol: 'http', maxNetworkRetries: 0 });
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }
}
