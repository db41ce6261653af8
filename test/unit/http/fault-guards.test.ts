import { AuthFailureLimiter } from '../../../adapters/http/admission/auth-failures';
import { BodyRejectedError, guardJsonBody, jsonDepthExceeds } from '../../../adapters/http/openai/body-guards';
import { toApiError } from '../../../adapters/http/openai/error-handler';
import { isDatabaseUnavailable } from '../../../adapters/postgres/unavailable';
import { VersionConflictError } from '../../../src/ports/event-store';

describe('body guards', () => {
  const guard =
    (text: string | Buffer, charset: string | null = 'utf-8') =>
    () =>
      guardJsonBody(undefined, undefined, Buffer.isBuffer(text) ? text : Buffer.from(text), charset);

  test('nesting is counted outside strings only, up to the limit', () => {
    expect(jsonDepthExceeds(Buffer.from('[[[1]]]'), 3)).toBe(false);
    expect(jsonDepthExceeds(Buffer.from('[[[[1]]]]'), 3)).toBe(true);
    expect(jsonDepthExceeds(Buffer.from('{"a":"[[[[[[\\"[[[["}'), 1)).toBe(false);
    expect(jsonDepthExceeds(Buffer.from('[{},{},{},{}]'), 2)).toBe(false);
  });

  test('UTF-8 JSON passes; invalid UTF-8, another charset or deep nesting is a 400/415 body-parser error', () => {
    expect(guard('{"model":"m","messages":[{"role":"user","content":"héllo ✓"}]}')).not.toThrow();
    expect(guard(Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x7d]))).toThrow(BodyRejectedError);
    expect(guard('{}', 'utf-7')).toThrow(expect.objectContaining({ type: 'charset.unsupported', status: 415 }));
    expect(guard('['.repeat(65) + ']'.repeat(65))).toThrow(expect.objectContaining({ type: 'entity.too.deep', status: 400 }));
  });
});

describe('authentication-failure limiter', () => {
  test('a client may fail its allowance, is then blocked, and earns attempts back at the per-minute rate', () => {
    let now = 0;
    const limiter = new AuthFailureLimiter({ failuresPerMinute: 3, now: () => now });
    for (let i = 0; i < 3; i++) {
      expect(limiter.blockedFor('a')).toBe(0);
      limiter.recordFailure('a');
    }
    expect(limiter.blockedFor('a')).toBe(20_000);
    expect(limiter.blockedFor('b')).toBe(0); // per client
    now = 20_000;
    expect(limiter.blockedFor('a')).toBe(0);
  });

  test('remembers at most maxClients addresses', () => {
    const limiter = new AuthFailureLimiter({ failuresPerMinute: 1, maxClients: 2, now: () => 0 });
    for (const client of ['a', 'b', 'c']) limiter.recordFailure(client);
    expect(limiter.blockedFor('a')).toBe(0); // forgotten
    expect(limiter.blockedFor('c')).toBeGreaterThan(0);
  });

  test('shared across instances: each allows its share of the failures, resized when instances join or leave', () => {
    let now = 0;
    let live = 3;
    const instances = [0, 1, 2].map(() => new AuthFailureLimiter({ failuresPerMinute: 30, now: () => now, instances: () => live }));
    // A client spread round robin over three instances fails 30 times in all, not 90, before it is blocked everywhere.
    let failures = 0;
    for (let i = 0; i < 90; i++) {
      const limiter = instances[i % 3]!;
      if (limiter.blockedFor('a') > 0) continue;
      limiter.recordFailure('a');
      failures++;
    }
    expect(failures).toBe(30);
    expect(instances.every((limiter) => limiter.blockedFor('a') > 0)).toBe(true);
    // One instance left: its share is the whole allowance again, refilling at 30 a minute.
    live = 1;
    expect(instances[0]!.blockedFor('a')).toBe(2_000);
    now = 2_000;
    expect(instances[0]!.blockedFor('a')).toBe(0);
  });

  test('behind a trusted load balancer the client is the rightmost forwarded address that is not a proxy', () => {
    const limiter = new AuthFailureLimiter({ failuresPerMinute: 1, trustedProxies: ['127.0.0.1', '10.0.0.2'] });
    expect(limiter.clientOf('::ffff:127.0.0.1', '203.0.113.7')).toBe('203.0.113.7');
    expect(limiter.clientOf('127.0.0.1', '198.51.100.1, 203.0.113.7, 10.0.0.2')).toBe('203.0.113.7'); // the first entry is the client's own say
    expect(limiter.clientOf('127.0.0.1', undefined)).toBe('127.0.0.1');
    // from an untrusted peer the header is ignored: anyone can write it
    expect(limiter.clientOf('192.0.2.9', '203.0.113.7')).toBe('192.0.2.9');
    expect(new AuthFailureLimiter({ failuresPerMinute: 1 }).clientOf('127.0.0.1', '203.0.113.7')).toBe('127.0.0.1');
  });
});

describe('database outages are 503, not 500', () => {
  test.each([
    ['refused', Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })],
    ['terminated', new Error('Connection terminated unexpectedly')],
    ['admin shutdown', Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' })],
    ['starting up', Object.assign(new Error('the database system is starting up'), { code: '57P03' })],
    ['pool timeout', new Error('timeout exceeded when trying to connect')],
    ['every address refused', new AggregateError([Object.assign(new Error('x'), { code: 'ECONNREFUSED' })])],
  ])('%s', (_name, error) => {
    expect(isDatabaseUnavailable(error)).toBe(true);
    expect(toApiError(error).toBody()).toEqual({ error: expect.objectContaining({ type: 'server_error', code: 'service_unavailable' }) });
    expect(toApiError(error).status).toBe(503);
  });

  test('a conflict that outlasted every retry is a 503; a bug or a bad query is still a 500', () => {
    expect(toApiError(new VersionConflictError('account-a', 1n, 2n)).status).toBe(503);
    expect(isDatabaseUnavailable(Object.assign(new Error('syntax error'), { code: '42601' }))).toBe(false);
    expect(toApiError(new TypeError('x is undefined')).status).toBe(500);
  });
});
