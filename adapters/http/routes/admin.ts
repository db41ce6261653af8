import { MINIMUM_NOTICE_MS } from '../../../domain/notice';
import { randomBytes } from 'node:crypto';
import type { Response, Router } from 'express';
import { z } from 'zod';
import { accountStreamId, maximumBalanceOf, payoutMethodSchema, suspensionReasonSchema, type AccountCommand } from '../../../domain/account';
import type { CommandMetadata } from '../../../domain/events/metadata';
import { formatUsd } from '../../../domain/money';
import { OPERATIONS, PRICE_BOOK_STREAM_ID, isRetiredAt, operationSchema, priceInForce, type PriceBookState } from '../../../domain/price-book';
import { modelCard } from './catalogue';
import { isBefore, toEpochMs } from '../../../domain/time';
import { ADMIN_KEY_ID } from '../../../src/api-keys';
import { adminMetadata } from '../../../src/command-metadata';
import { recordPersonalDataViewed } from '../../../src/compliance/personal-data-access';
import type { RouteMount } from '../../../src/gateway';
import { keyOf } from '../auth';
import { ApiError } from '../openai/errors';
import { requestIdOf } from '../observability/request-id';
import {
  AccountReader,
  DEFAULT_CUSTOMER_SCOPES,
  accountNotFound,
  authenticated,
  balanceView,
  customerScopesSchema,
  instantSchema,
  isId,
  issueKey,
  keyLimitFields,
  limitChangesOf,
  keyNotFound,
  parseInput,
  positiveUsdSchema,
  priceUsdSchema,
  refused,
  shortTextSchema,
} from './account';

/**
 * The admin API under /admin, for an admin-scoped key. Every change goes through a decider
 * (ledger.*.handle) and records the acting admin as the actor of its events.
 */

// Model ids are what clients send as `model`, e.g. "meta-llama/Llama-3.1-8B-Instruct".
const modelIdSchema = z
  .string({ error: 'expected a model id' })
  .regex(/^[A-Za-z0-9._:/@+-]{1,128}$/, 'expected a model id of letters, digits and ._:/@+- (at most 128)');

export const createAccountSchema = z
  .object({
    display_name: shortTextSchema,
    email: z.email({ error: 'expected an email address' }).max(254, 'at most 254 characters'),
    promo_credit_usd: positiveUsdSchema.optional(),
    promo_expires_at: instantSchema.optional(),
  })
  .superRefine((body, ctx) => {
    if (body.promo_credit_usd !== undefined && body.promo_expires_at === undefined) {
      ctx.addIssue({ code: 'custom', path: ['promo_expires_at'], message: 'required with promo_credit_usd', params: { missing: true } });
    }
    if (body.promo_credit_usd === undefined && body.promo_expires_at !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['promo_credit_usd'], message: 'required with promo_expires_at', params: { missing: true } });
    }
  });
/** Why an operator looks at personal data (optional; recorded in the audit log as the entry's reason). */
const purposeSchema = z.string({ error: 'expected text' }).trim().min(1, 'at least 1 character').max(200, 'at most 200 characters').optional();
export const searchAccountsSchema = z.object({
  q: z
    .string({ error: 'expected text' })
    .trim()
    .max(200, 'at most 200 characters')
    .optional()
    .transform((q) => (q === '' ? undefined : q)),
  limit: z.coerce.number({ error: 'expected an integer' }).int('expected an integer').min(1, 'at least 1').max(200, 'at most 200').default(50),
  starting_after: z.string({ error: 'expected an account id' }).max(100, 'at most 100 characters').optional(),
  purpose: purposeSchema,
});
export const payoutSchema = z.object({
  method: payoutMethodSchema,
  reference: z.string({ error: 'expected a string' }).regex(/^[A-Za-z0-9._:/#-]{1,100}$/, 'expected 1-100 letters, digits or ._:/#-'),
  amount_usd: positiveUsdSchema,
  reason: shortTextSchema,
});
export const accountDetailsSchema = z.object({ purpose: purposeSchema });
export const issueKeySchema = z.object({ name: shortTextSchema.default('key issued by an admin'), scopes: customerScopesSchema.optional(), ...keyLimitFields });
export const revokeKeySchema = z.object({ reason: shortTextSchema.default('revoked by an admin') });
export const topUpSchema = z.object({
  amount_usd: positiveUsdSchema,
  // Joined to "manual:" as the payment reference: the same reference twice credits once.
  reference: z.string({ error: 'expected a string' }).regex(/^[A-Za-z0-9._:/#-]{1,100}$/, 'expected 1-100 letters, digits or ._:/#-'),
  reason: shortTextSchema,
});
export const promoGrantSchema = z.object({ amount_usd: positiveUsdSchema, expires_at: instantSchema, reason: shortTextSchema });
/** without amount_usd, all of the grant's unspent remainder */
/** null: back to the deployment's default (TOLLGATE_MAX_BALANCE_USD) */
export const maximumBalanceSchema = z.object({ maximum_usd: positiveUsdSchema.nullable(), reason: shortTextSchema });
export const promoRevocationSchema = z.object({ amount_usd: positiveUsdSchema.optional(), reason: shortTextSchema });
export const suspendSchema = z.object({ reason: suspensionReasonSchema });
export const addModelSchema = z.object({
  id: modelIdSchema,
  operations: z.array(operationSchema, { error: 'expected an array of operations' }).min(1, 'at least one operation'),
  max_output_tokens: z.number({ error: 'expected an integer' }).int('expected an integer').min(1, 'at least 1').max(10_000_000, 'at most 10000000'),
});
export const setPriceSchema = z.object({
  model: modelIdSchema,
  operation: operationSchema,
  input_usd_per_million: priceUsdSchema,
  output_usd_per_million: priceUsdSchema,
  /** transcription, translation: per second of audio (default 0) */
  usd_per_audio_second: priceUsdSchema.optional(),
  /** speech: per million input characters (default 0) */
  usd_per_million_characters: priceUsdSchema.optional(),
  effective_at: instantSchema.optional(),
  /** required to schedule an increase sooner than TOLLGATE_PRICE_INCREASE_NOTICE_DAYS; audited */
  short_notice_reason: shortTextSchema.optional(),
});
export const describeModelSchema = z
  .object({
    description: z.string({ error: 'expected text' }).trim().min(1, 'must not be empty').max(2_000, 'at most 2000 characters'),
    context_length: z.number({ error: 'expected an integer' }).int('expected an integer').min(1, 'at least 1').max(100_000_000, 'at most 100000000'),
    licence: shortTextSchema,
    rules_text: z.string({ error: 'expected text' }).trim().min(1, 'must not be empty').max(10_000, 'at most 10000 characters'),
    rules_url: z
      .url({ protocol: /^https?$/, error: 'expected an http(s) URL' })
      .max(2_000, 'at most 2000 characters')
      .nullable()
      .default(null),
    status: z.enum(['preview', 'available', 'deprecated'], { error: 'expected preview, available or deprecated' }),
    retires_at: instantSchema.nullable().default(null),
    /** required to retire sooner than 14 days ahead (or to bring a retirement that close); audited */
    short_notice_reason: shortTextSchema.optional(),
  })
  .superRefine((body, ctx) => {
    if (body.status === 'deprecated' && body.retires_at === null) {
      ctx.addIssue({ code: 'custom', path: ['retires_at'], message: 'required when status is deprecated', params: { missing: true } });
    }
    if (body.status !== 'deprecated' && body.retires_at !== null) {
      ctx.addIssue({ code: 'custom', path: ['retires_at'], message: 'only a deprecated model has a retirement date' });
    }
  });

export const mountAdminRoutes: RouteMount = (router: Router, gateway) => {
  const reader = new AccountReader(gateway);
  const admin = authenticated(gateway.keys, 'admin');
  const metadataOf = (res: Response, correlationId = requestIdOf(res)): CommandMetadata => ({
    ...adminMetadata(keyOf(res).keyId, correlationId),
    causationId: requestIdOf(res),
  });
  const accountIdOf = (params: Record<string, unknown>): string => {
    const id = String(params['id']);
    if (!isId(id)) throw accountNotFound();
    return id;
  };
  const handleAccount = async (accountId: string, command: AccountCommand) => {
    const result = await gateway.ledger.accounts.handle(accountStreamId(accountId), command);
    if (!result.ok) throw refused(result.error);
    return result;
  };

  // Accounts -----------------------------------------------------------------------------------

  router.post('/admin/accounts', admin, async (req, res) => {
    const body = parseInput(createAccountSchema, req.body);
    const now = new Date().toISOString();
    // Checked before the account is opened, so a refused grant never leaves half an account.
    if (body.promo_expires_at !== undefined && !isBefore(now, body.promo_expires_at)) {
      throw refused({ error: 'promo_expiry_not_in_future', expiresAt: body.promo_expires_at, now });
    }
    if (body.promo_credit_usd !== undefined && body.promo_credit_usd > gateway.policy.maximumBalance) {
      throw refused({ error: 'balance_limit_exceeded', balance: 0n, amount: body.promo_credit_usd, maximum: gateway.policy.maximumBalance });
    }
    const accountId = `acct_${randomBytes(10).toString('hex')}`;
    await handleAccount(accountId, {
      type: 'OpenAccount',
      data: {
        accountId,
        displayNameCiphertext: await reader.vault.encrypt(accountId, body.display_name),
        emailCiphertext: await reader.vault.encrypt(accountId, body.email),
      },
      metadata: metadataOf(res),
    });
    let grantId: string | null = null;
    if (body.promo_credit_usd !== undefined && body.promo_expires_at !== undefined) {
      grantId = newGrantId();
      await handleAccount(accountId, {
        type: 'GrantPromoCredit',
        data: { grantId, amount: body.promo_credit_usd, expiresAt: body.promo_expires_at, reason: 'promo credit on account creation' },
        metadata: metadataOf(res),
      });
    }
    res.status(201).json({ account_id: accountId, promo_grant_id: grantId });
  });

  router.get('/admin/accounts', admin, async (req, res) => {
    const { q, limit, starting_after, purpose } = parseInput(searchAccountsSchema, req.query);
    const page = await reader.searchAccounts(q, limit, starting_after);
    // Every account whose name or email is in the answer was seen (the query itself, which may be an email, is not recorded).
    await recordPersonalDataViewed(
      gateway.store,
      page.accounts.map((a) => ({ accountId: a.account_id, displayName: a.display_name, email: a.email })),
      { what: 'account_search', purpose, metadata: metadataOf(res) },
    );
    res.json({ object: 'list', data: page.accounts, has_more: page.hasMore });
  });

  router.get('/admin/accounts/:id', admin, async (req, res) => {
    const accountId = accountIdOf(req.params);
    const { purpose } = parseInput(accountDetailsSchema, req.query);
    const view = await reader.view(accountId, { personalData: true });
    if (!view) throw accountNotFound();
    await recordPersonalDataViewed(gateway.store, [{ accountId, displayName: view.display_name ?? null, email: view.email ?? null }], {
      what: 'account_details',
      purpose,
      metadata: metadataOf(res),
    });
    res.json(view);
  });

  router.post('/admin/accounts/:id/top-ups', admin, async (req, res) => {
    const accountId = accountIdOf(req.params);
    const body = parseInput(topUpSchema, req.body);
    const paymentReference = `manual:${body.reference}`;
    // TopUpCompleted has no reason field: the admin's reason travels as the correlation id.
    const result = await handleAccount(accountId, {
      type: 'CompleteTopUp',
      data: { paymentReference, amount: body.amount_usd },
      metadata: metadataOf(res, `reason: ${body.reason}`),
    });
    const applied = result.events.length > 0;
    res.status(applied ? 201 : 200).json({
      account_id: accountId,
      payment_reference: paymentReference,
      applied,
      amount_usd: formatUsd(body.amount_usd),
      ...balanceView(result.state, new Date().toISOString()),
    });
  });

  // Credit paid back outside the card (bank transfer): recorded after the money was sent, limited
  // to what is refundable. The same method and reference twice records once.
  router.post('/admin/accounts/:id/payouts', admin, async (req, res) => {
    const accountId = accountIdOf(req.params);
    const body = parseInput(payoutSchema, req.body);
    const payoutId = `payout:${body.method}:${body.reference}`;
    const result = await handleAccount(accountId, {
      type: 'RecordPayout',
      data: { payoutId, method: body.method, reference: body.reference, amount: body.amount_usd, reason: body.reason },
      metadata: metadataOf(res),
    });
    const applied = result.events.length > 0;
    res.status(applied ? 201 : 200).json({
      account_id: accountId,
      payout_id: payoutId,
      applied,
      amount_usd: formatUsd(body.amount_usd),
      status: result.state.status,
      ...balanceView(result.state, new Date().toISOString()),
    });
  });

  router.post('/admin/accounts/:id/promo-grants', admin, async (req, res) => {
    const accountId = accountIdOf(req.params);
    const body = parseInput(promoGrantSchema, req.body);
    const grantId = newGrantId();
    const result = await handleAccount(accountId, {
      type: 'GrantPromoCredit',
      data: { grantId, amount: body.amount_usd, expiresAt: body.expires_at, reason: body.reason },
      metadata: metadataOf(res),
    });
    res.status(201).json({
      account_id: accountId,
      grant_id: grantId,
      amount_usd: formatUsd(body.amount_usd),
      expires_at: body.expires_at,
      ...balanceView(result.state, new Date().toISOString()),
    });
  });

  router.post('/admin/accounts/:id/promo-grants/:grantId/revoke', admin, async (req, res) => {
    const accountId = accountIdOf(req.params);
    const grantId = String(req.params['grantId']);
    if (!isId(grantId)) throw refused({ error: 'promo_grant_not_found', grantId });
    const body = parseInput(promoRevocationSchema, req.body);
    const result = await handleAccount(accountId, {
      type: 'RevokePromoCredit',
      data: { grantId, amount: body.amount_usd ?? null, reason: body.reason },
      metadata: metadataOf(res),
    });
    const revoked = result.events.map((e) => e.event).find((e) => e.type === 'PromoCreditRevoked');
    const grant = result.state.promoGrants.get(grantId);
    res.json({
      account_id: accountId,
      grant_id: grantId,
      revoked_usd: formatUsd(revoked?.type === 'PromoCreditRevoked' ? revoked.data.amount : 0n),
      remaining_usd: formatUsd(grant?.remaining ?? 0n),
      ...balanceView(result.state, new Date().toISOString()),
    });
  });

  router.post('/admin/accounts/:id/maximum-balance', admin, async (req, res) => {
    const accountId = accountIdOf(req.params);
    const body = parseInput(maximumBalanceSchema, req.body);
    const result = await handleAccount(accountId, {
      type: 'SetMaximumBalance',
      data: { maximum: body.maximum_usd, reason: body.reason },
      metadata: metadataOf(res),
    });
    res.json({
      account_id: accountId,
      maximum_balance_usd: formatUsd(maximumBalanceOf(result.state, gateway.policy)),
      default_maximum_balance_usd: formatUsd(gateway.policy.maximumBalance),
      raised: result.state.maximumBalance !== null,
      ...balanceView(result.state, new Date().toISOString()),
    });
  });

  router.post('/admin/accounts/:id/suspend', admin, async (req, res) => {
    const accountId = accountIdOf(req.params);
    const { reason } = parseInput(suspendSchema, req.body);
    const result = await handleAccount(accountId, { type: 'SuspendAccount', data: { reason }, metadata: metadataOf(res) });
    res.json({ account_id: accountId, status: result.state.status, suspension_reason: result.state.suspensionReason });
  });

  router.post('/admin/accounts/:id/reinstate', admin, async (req, res) => {
    const accountId = accountIdOf(req.params);
    const result = await handleAccount(accountId, { type: 'ReinstateAccount', data: {}, metadata: metadataOf(res) });
    res.json({ account_id: accountId, status: result.state.status, suspension_reason: result.state.suspensionReason });
  });

  // Keys ---------------------------------------------------------------------------------------

  router.get('/admin/accounts/:id/keys', admin, async (req, res) => {
    const accountId = accountIdOf(req.params);
    if (!(await reader.state(accountId))) throw accountNotFound();
    res.json({ object: 'list', data: await reader.keysOf(accountId) });
  });

  router.post('/admin/accounts/:id/keys', admin, async (req, res) => {
    const accountId = accountIdOf(req.params);
    const body = parseInput(issueKeySchema, req.body);
    const issued = await issueKey(gateway, reader, {
      accountId,
      name: body.name,
      scopes: body.scopes ?? DEFAULT_CUSTOMER_SCOPES,
      metadata: metadataOf(res),
      createdBy: { kind: 'operator' },
      limits: limitChangesOf(body),
    });
    res.status(201).json(issued);
  });

  router.delete('/admin/keys/:keyId', admin, async (req, res) => {
    const keyId = String(req.params['keyId']);
    if (!isId(keyId)) throw keyNotFound();
    // Revoking the bootstrapped admin key would lock every operator out; rotate it instead.
    if (keyId === ADMIN_KEY_ID) {
      throw new ApiError(409, 'invalid_request_error', 'admin_key_not_revocable', null, 'The bootstrapped admin key cannot be revoked through the API.');
    }
    const { reason } = parseInput(revokeKeySchema, req.body);
    const result = await gateway.keys.revoke(keyId, reason, metadataOf(res));
    if (!result.ok) throw refused(result.error);
    res.json({ key_id: keyId, status: 'revoked' });
  });

  // Models and prices --------------------------------------------------------------------------

  router.get('/admin/models', admin, async (_req, res) => {
    const { state } = await gateway.ledger.priceBook.load(PRICE_BOOK_STREAM_ID);
    res.json({ object: 'list', data: modelsView(state, new Date().toISOString()) });
  });

  router.post('/admin/models', admin, async (req, res) => {
    const body = parseInput(addModelSchema, req.body);
    const result = await gateway.ledger.priceBook.handle(PRICE_BOOK_STREAM_ID, {
      type: 'AddModel',
      data: { modelId: body.id, operations: body.operations, maxOutputTokens: BigInt(body.max_output_tokens) },
      metadata: metadataOf(res),
    });
    if (!result.ok) throw refused(result.error);
    res.status(201).json(modelsView(result.state, new Date().toISOString()).find((m) => m.id === body.id));
  });

  router.delete('/admin/models/:id', admin, async (req, res) => {
    const modelId = String(req.params['id']);
    const result = await gateway.ledger.priceBook.handle(PRICE_BOOK_STREAM_ID, { type: 'RetireModel', data: { modelId }, metadata: metadataOf(res) });
    if (!result.ok) throw refused(result.error);
    res.json({ id: modelId, retired: true });
  });

  router.put('/admin/models/:id/catalogue', admin, async (req, res) => {
    const modelId = String(req.params['id']);
    const body = parseInput(describeModelSchema, req.body);
    const result = await gateway.ledger.priceBook.handle(PRICE_BOOK_STREAM_ID, {
      type: 'DescribeModel',
      data: {
        modelId,
        description: body.description,
        contextLength: body.context_length,
        licence: body.licence,
        rulesText: body.rules_text,
        rulesUrl: body.rules_url,
        status: body.status,
        retiresAt: body.retires_at,
        retirementNoticeDays: MINIMUM_NOTICE_MS.model_retirement / 86_400_000,
        ...(body.short_notice_reason !== undefined ? { shortNoticeReason: body.short_notice_reason } : {}),
      },
      metadata: { ...metadataOf(res), now: gateway.clock().toISOString() },
    });
    if (!result.ok) throw refused(result.error);
    res.json(modelsView(result.state, gateway.clock().toISOString()).find((m) => m.id === modelId));
  });

  router.post('/admin/prices', admin, async (req, res) => {
    const body = parseInput(setPriceSchema, req.body);
    const result = await gateway.ledger.priceBook.handle(PRICE_BOOK_STREAM_ID, {
      type: 'SetPrice',
      data: {
        modelId: body.model,
        operation: body.operation,
        inputPerMillion: body.input_usd_per_million,
        outputPerMillion: body.output_usd_per_million,
        ...(body.usd_per_audio_second !== undefined ? { perAudioSecond: body.usd_per_audio_second } : {}),
        ...(body.usd_per_million_characters !== undefined ? { perMillionCharacters: body.usd_per_million_characters } : {}),
        ...(body.effective_at !== undefined ? { effectiveAt: body.effective_at } : {}),
        increaseNoticeDays: gateway.config.TOLLGATE_PRICE_INCREASE_NOTICE_DAYS,
        ...(body.short_notice_reason !== undefined ? { shortNoticeReason: body.short_notice_reason } : {}),
      },
      metadata: { ...metadataOf(res), now: gateway.clock().toISOString() },
    });
    if (!result.ok) throw refused(result.error);
    const set = result.events[0]!.event;
    if (set.type !== 'PriceSet') throw new Error(`SetPrice answered ${set.type}`);
    res.status(201).json({
      model: set.data.modelId,
      operation: set.data.operation,
      version: set.data.version,
      input_usd_per_million: formatUsd(set.data.inputPerMillion),
      output_usd_per_million: formatUsd(set.data.outputPerMillion),
      ...(set.data.perAudioSecond === undefined ? {} : { usd_per_audio_second: formatUsd(set.data.perAudioSecond) }),
      ...(set.data.perMillionCharacters === undefined ? {} : { usd_per_million_characters: formatUsd(set.data.perMillionCharacters) }),
      effective_at: set.data.effectiveAt,
      increase: set.data.increase === true,
      ...(set.data.shortNoticeReason !== undefined && { short_notice_reason: set.data.shortNoticeReason }),
    });
  });
};

function newGrantId(): string {
  return `promo_${randomBytes(10).toString('hex')}`;
}

/** Every model with the prices in force now and those scheduled; superseded prices are left out. */
function modelsView(book: PriceBookState, now: string) {
  const nowMs = toEpochMs(now);
  return [...book.models.values()]
    .sort((a, b) => a.modelId.localeCompare(b.modelId))
    .map((model) => {
      // A retired model still shows the prices it was last sold at.
      const inForce = OPERATIONS.flatMap((operation) => {
        const price = priceInForce(
          {
            ...book,
            models: new Map(book.models).set(model.modelId, {
              modelId: model.modelId,
              operations: model.operations,
              maxOutputTokens: model.maxOutputTokens,
              retired: false,
            }),
          },
          model.modelId,
          operation,
          now,
        );
        return price.ok ? [price.value.version] : [];
      });
      const prices = [...book.prices.values()]
        .filter((p) => p.modelId === model.modelId && (inForce.includes(p.version) || toEpochMs(p.effectiveAt) > nowMs))
        .sort((a, b) => a.version - b.version)
        .map((p) => ({
          operation: p.operation,
          version: p.version,
          input_usd_per_million: formatUsd(p.inputPerMillion),
          output_usd_per_million: formatUsd(p.outputPerMillion),
          ...(p.perAudioSecond === undefined ? {} : { usd_per_audio_second: formatUsd(p.perAudioSecond) }),
          ...(p.perMillionCharacters === undefined ? {} : { usd_per_million_characters: formatUsd(p.perMillionCharacters) }),
          effective_at: p.effectiveAt,
          in_force: inForce.includes(p.version),
        }));
      const { id: _id, ...card } = modelCard(model);
      return {
        id: model.modelId,
        operations: model.operations,
        max_output_tokens: Number(model.maxOutputTokens),
        retired: isRetiredAt(model, now),
        prices,
        ...card,
      };
    });
}
