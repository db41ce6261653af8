import { InvoiceListCache, type BillingDocument } from '../../../src/payments/invoices';

/** The billing page's cache of Stripe's invoice lists, on a clock the test moves. */

const invoice = (id: string, status = 'paid'): BillingDocument => ({
  kind: 'invoice',
  id,
  number: null,
  status,
  subtotal: 1_000_000n,
  tax: 0n,
  total: 1_000_000n,
  reverseCharge: false,
  reference: null,
  createdAt: '2026-01-01T00:00:00.000Z',
  documentUrl: null,
});

function setup(ttlMs = 60_000, maxEntries?: number) {
  let now = 1_000_000;
  const cache = new InvoiceListCache({ ttlMs, now: () => now, ...(maxEntries === undefined ? {} : { maxEntries }) });
  const calls: string[] = [];
  const stripe =
    (customerId: string, status = 'paid') =>
    async () => {
      calls.push(customerId);
      return [invoice(`in_${customerId}`, status)];
    };
  return { cache, calls, stripe, advance: (ms: number) => (now += ms) };
}

test('a fresh entry answers without asking Stripe; past the TTL Stripe is asked again', async () => {
  const { cache, calls, stripe, advance } = setup(60_000);
  await cache.list('cus_a', 0, stripe('cus_a'));
  advance(59_999);
  await cache.list('cus_a', 0, stripe('cus_a'));
  expect(calls).toEqual(['cus_a']);
  advance(1);
  await cache.list('cus_a', 0, stripe('cus_a'));
  expect(calls).toEqual(['cus_a', 'cus_a']);
});

test('a new stamp (a payment on the account since) or an invalidation makes the next load ask Stripe; other customers keep theirs', async () => {
  const { cache, calls, stripe } = setup();
  await cache.list('cus_a', 0, stripe('cus_a'));
  await cache.list('cus_b', 0, stripe('cus_b'));
  await cache.list('cus_a', 1, stripe('cus_a'));
  expect(calls).toEqual(['cus_a', 'cus_b', 'cus_a']);
  cache.invalidate('cus_a');
  const fresh = await cache.list('cus_a', 1, stripe('cus_a', 'void'));
  expect(fresh.map((d) => d.status)).toEqual(['void']);
  await cache.list('cus_b', 0, stripe('cus_b'));
  expect(calls).toEqual(['cus_a', 'cus_b', 'cus_a', 'cus_a']);
});

test('an answer that was in flight when the invoices changed is returned to its caller but not kept', async () => {
  const { cache, calls, stripe } = setup();
  let answer!: (documents: BillingDocument[]) => void;
  const slow = cache.list('cus_a', 0, () => new Promise((resolve) => (answer = resolve)));
  cache.invalidate('cus_a');
  answer([invoice('in_old', 'open')]);
  expect((await slow).map((d) => d.status)).toEqual(['open']);
  const next = await cache.list('cus_a', 0, stripe('cus_a'));
  expect(next.map((d) => d.status)).toEqual(['paid']);
  expect(calls).toEqual(['cus_a']);
});

test('concurrent loads share one call to Stripe; a failed call is not kept', async () => {
  const { cache, calls, stripe } = setup();
  let fail = true;
  const flaky = async () => {
    calls.push('cus_a');
    if (fail) throw new Error('Stripe is down');
    return [invoice('in_a')];
  };
  await expect(Promise.all([cache.list('cus_a', 0, flaky), cache.list('cus_a', 0, flaky)])).rejects.toThrow('Stripe is down');
  expect(calls).toEqual(['cus_a']);
  fail = false;
  const [one, two] = await Promise.all([cache.list('cus_a', 0, flaky), cache.list('cus_a', 0, flaky)]);
  expect(one).toBe(two);
  expect(calls).toEqual(['cus_a', 'cus_a']);
  await cache.list('cus_a', 0, stripe('cus_a'));
  expect(calls).toEqual(['cus_a', 'cus_a']);
});

test('past maxEntries the oldest customer is dropped', async () => {
  const { cache, calls, stripe } = setup(60_000, 2);
  for (const c of ['cus_a', 'cus_b', 'cus_c']) await cache.list(c, 0, stripe(c));
  await cache.list('cus_c', 0, stripe('cus_c'));
  await cache.list('cus_b', 0, stripe('cus_b'));
  expect(calls).toEqual(['cus_a', 'cus_b', 'cus_c']);
  await cache.list('cus_a', 0, stripe('cus_a'));
  expect(calls).toEqual(['cus_a', 'cus_b', 'cus_c', 'cus_a']);
});
