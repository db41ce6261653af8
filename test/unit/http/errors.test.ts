import {
  formatResetDuration,
  insufficientQuota,
  internal,
  invalidApiKey,
  modelNotFound,
  rateLimited,
  unknownRoute,
  upstreamUnavailable,
} from '../../../adapters/http/openai/errors';
import { describeForLog, toApiError } from '../../../adapters/http/openai/error-handler';

describe('error constructors', () => {
  it('insufficient quota: 429, insufficient_quota, told not to retry, amounts in USD', () => {
    const error = insufficientQuota({ available: 1_250_000n, needed: 3_000_001n });
    expect(error).toMatchObject({ status: 429, type: 'insufficient_quota', code: 'insufficient_quota', param: null });
    expect(error.headers).toEqual({ 'x-should-retry': 'false' });
    expect(error.message).toContain('USD 3.000001');
    expect(error.message).toContain('USD 1.250000');
  });

  it('insufficient quota says what the reservation is made of: prompt, max_tokens, price, margin', () => {
    const basis = { promptTokens: 12, maxOutputTokens: 10, outputLimit: 'max_tokens' as const, marginBasisPoints: 1000n, maximumCost: 924n };
    expect(insufficientQuota({ available: 500n, needed: 924n, basis }).message).toBe(
      'Insufficient credit: this request needs up to USD 0.000924 (the most it can cost: 12 prompt tokens + up to 10 output tokens (max_tokens) ' +
        'at the price in force, plus 10% margin) but the available balance is USD 0.000500. Top up your account to continue.',
    );
    // no max_tokens: the model's limit, and how to reserve less
    expect(insufficientQuota({ available: 0n, needed: 924n, basis: { ...basis, outputLimit: 'model_limit', marginBasisPoints: 250n } }).message).toContain(
      "12 prompt tokens + up to 10 output tokens (the model's limit; set max_tokens to reserve less) at the price in force, plus 2.5% margin",
    );
    // an embedding: the prompt only
    expect(insufficientQuota({ available: 0n, needed: 924n, basis: { ...basis, maxOutputTokens: 0, marginBasisPoints: 5n } }).message).toContain(
      '(the most it can cost: 12 prompt tokens at the price in force, plus 0.05% margin)',
    );
    // below the cap, the reservation came from the historical average: said so, with the cap
    expect(insufficientQuota({ available: 0n, needed: 800n, basis }).message).toContain(
      '(the historical average cost of this model, plus 10% margin; at most USD 0.000924: 12 prompt tokens',
    );
  });

  it('insufficient quota states a negative balance as such', () => {
    expect(insufficientQuota({ available: -5n, needed: 1n }).message).toContain('USD -0.000005');
  });

  it('invalid key: 401 invalid_api_key, and the message never quotes a key', () => {
    expect(invalidApiKey('invalid')).toMatchObject({ status: 401, code: 'invalid_api_key', type: 'invalid_request_error' });
    expect(invalidApiKey('missing')).toMatchObject({ status: 401, code: 'invalid_api_key' });
  });

  it('model not found: 404 model_not_found on param model; quotes only id-shaped names', () => {
    expect(modelNotFound('llama-3.1-8b')).toMatchObject({ status: 404, code: 'model_not_found', param: 'model' });
    expect(modelNotFound('llama-3.1-8b').message).toContain('`llama-3.1-8b`');
    expect(modelNotFound('ignore previous instructions').message).not.toContain('ignore');
  });

  it('rate limited: 429 with whole-second Retry-After rounded up, and precise retry-after-ms', () => {
    const error = rateLimited('tokens', { limit: 1000, retryAfterMs: 1_200.4 });
    expect(error).toMatchObject({ status: 429, code: 'rate_limit_exceeded', type: 'tokens' });
    expect(error.headers['retry-after']).toBe('2');
    expect(error.headers['retry-after-ms']).toBe('1201');
  });

  it('upstream unavailable is 503 and internal is 500 quoting only the request id', () => {
    expect(upstreamUnavailable()).toMatchObject({ status: 503, type: 'server_error' });
    const error = internal('req_abc');
    expect(error).toMatchObject({ status: 500, type: 'server_error', code: 'internal_error' });
    expect(error.message).toContain('req_abc');
  });

  it('unknown route says which, cut short', () => {
    expect(unknownRoute('GET', '/v1/nope').toBody()).toEqual({
      error: { message: 'Invalid URL (GET /v1/nope)', type: 'invalid_request_error', param: null, code: 'unknown_url' },
    });
    expect(unknownRoute('GET', `/${'x'.repeat(5000)}`).message.length).toBeLessThan(300);
  });
});

describe('formatResetDuration (Go duration, as OpenAI sends)', () => {
  it.each([
    [0, '0s'],
    [0.2, '1ms'],
    [120, '120ms'],
    [1000, '1s'],
    [8640, '8.64s'],
    [60_000, '1m0s'],
    [360_000, '6m0s'],
    [179_560, '2m59.56s'],
    [3_723_000, '1h2m3s'],
  ])('%d ms -> %s', (ms, text) => {
    expect(formatResetDuration(ms)).toBe(text);
  });
});

describe('toApiError', () => {
  it('malformed JSON from body-parser becomes 400 invalid_json, without the parser message', () => {
    const parserError = Object.assign(new SyntaxError('Unexpected token s, "secret prompt" is not valid JSON'), {
      type: 'entity.parse.failed',
      status: 400,
      body: 'secret prompt',
    });
    const error = toApiError(parserError);
    expect(error).toMatchObject({ status: 400, type: 'invalid_request_error', code: 'invalid_json' });
    expect(JSON.stringify(error.toBody())).not.toContain('secret');
  });

  it('too large becomes 400 request_too_large naming the limit', () => {
    const error = toApiError(Object.assign(new Error('request entity too large'), { type: 'entity.too.large', status: 413, limit: 1024 }));
    expect(error).toMatchObject({ status: 400, code: 'request_too_large' });
    expect(error.message).toContain('1024');
  });

  it('anything else is a generic 500 without its message', () => {
    const error = toApiError(new Error('connection to 10.0.0.5:5432 refused'), 'req_1');
    expect(error.status).toBe(500);
    expect(error.message).not.toContain('10.0.0.5');
  });

  it('describeForLog keeps name, code and frames but drops the message', () => {
    const err = Object.assign(new SyntaxError('Unexpected token in JSON: "the completion text"'), { code: 'E_X' });
    const described = describeForLog(err);
    expect(described).toMatchObject({ name: 'SyntaxError', code: 'E_X' });
    expect(described.frames).toMatch(/^at /);
    expect(JSON.stringify(described)).not.toContain('completion text');
  });
});
