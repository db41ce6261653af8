import { z } from 'zod';
import 'zod-openapi';
import { suspensionReasonSchema } from '../../../domain/account';
import { apiKeyScopeSchema } from '../../../domain/api-key';
import { operationSchema } from '../../../domain/price-book';
import type { ApiErrorBody } from '../openai/errors';
import type { AccountSummary, AccountView, KeyView, RequestView } from '../routes/account';
import type { CatalogueEntry } from '../routes/catalogue';

/**
 * Zod schemas of what the routes answer, for the OpenAPI document (document.ts). The request
 * schemas are the routes' own (exported from the route files); the answers had no schema, so
 * they are here. Where a route file names its answer's type (AccountView, KeyView, ...), the
 * `Same<>` checks at the bottom make the type-check fail when the two drift apart; the test in
 * test/integration/http/openapi.test.ts validates every answer of a real gateway against them.
 *
 * Objects are `z.object`, rendered with `additionalProperties: false`: a field the document
 * does not list fails the test. Bodies relayed from upstreams (OpenAI's shapes) are loose.
 */

// --- shared pieces ------------------------------------------------------------------------------

export const usdSchema = z
  .string()
  .regex(/^-?\d+\.\d{6}$/)
  .meta({
    id: 'Usd',
    description: 'An amount of US dollars as an exact decimal string with 6 decimals (micro-USD), e.g. "10.500000". Never a JSON number.',
    example: '10.500000',
  });

const instant = z.iso.datetime({ offset: true }).meta({ description: 'ISO-8601 instant', example: '2026-12-01T12:00:00.000Z' });
const tokenCount = z.string().regex(/^\d+$/).meta({ description: 'A token count as a decimal string (may exceed 2^53)' });
const accountStatus = z.enum(['open', 'suspended', 'closed']);

export const errorSchema = z
  .object({
    error: z.object({
      message: z.string().meta({ description: 'What went wrong, in words; never quotes a prompt, a completion or a key' }),
      type: z
        .enum(['invalid_request_error', 'insufficient_quota', 'requests', 'tokens', 'server_error', 'upstream_error', 'upstream_unavailable'])
        .meta({ description: 'upstream_error / upstream_unavailable: the upstream failed, timed out or could not be reached (inference routes only)' }),
      param: z.string().nullable().meta({ description: 'The request parameter at fault, e.g. "messages[0].role", or null' }),
      code: z.string().nullable().meta({ description: 'A stable machine-readable reason, e.g. insufficient_quota, invalid_api_key, model_not_found' }),
    }),
  })
  .meta({
    id: 'Error',
    description: "OpenAI's error shape, used by every route for every error.",
    example: { error: { message: 'Incorrect API key provided.', type: 'invalid_request_error', param: null, code: 'invalid_api_key' } },
  });

export const listOf = <T extends z.ZodType>(item: T) => z.object({ object: z.literal('list'), data: z.array(item) });
/** A list answered a page at a time: `has_more` says whether `starting_after` (the last id) gives more. */
export const pageOf = <T extends z.ZodType>(item: T) =>
  z.object({
    object: z.literal('list'),
    data: z.array(item),
    has_more: z.boolean().meta({ description: 'more follow: ask again with starting_after set to the last id' }),
  });

// --- operations ---------------------------------------------------------------------------------

export const healthSchema = z.object({ status: z.literal('ok') }).meta({ id: 'Health' });
export const readinessSchema = z
  .object({
    status: z
      .enum(['ready', 'degraded', 'not ready'])
      .meta({ description: "'degraded' (still 200): the global log is stalled by a long transaction; see global_log" }),
    database: z.enum(['ok', 'unreachable']),
    upstreams: z.enum(['ok', 'none reachable']),
    global_log: z
      .enum(['ok', 'stalled'])
      .optional()
      .meta({ description: 'whether global-log readers (read models, workers) are held back past the configured threshold' }),
    global_log_lag_seconds: z
      .number()
      .nonnegative()
      .optional()
      .meta({ description: 'age of the oldest committed event readers cannot see yet, while stalled' }),
  })
  .meta({ id: 'Readiness' });

// --- catalogue ----------------------------------------------------------------------------------

export const catalogueEntrySchema = z
  .object({
    model: z.string(),
    operation: operationSchema,
    price_version: z.int(),
    input_usd_per_million: usdSchema,
    output_usd_per_million: usdSchema,
    unit: z.enum(['token', 'audio_second', 'character']).meta({
      description:
        'what the operation is chiefly billed in: tokens (chat, completion, embedding), audio seconds (transcription, translation), input characters (speech)',
    }),
    usd_per_audio_second: usdSchema.optional().meta({ description: 'transcription and translation' }),
    usd_per_million_characters: usdSchema.optional().meta({ description: 'speech' }),
  })
  .meta({ id: 'CataloguePrice' });

export const scheduledPriceSchema = catalogueEntrySchema
  .extend({
    effective_at: instant,
    increase: z.boolean().meta({ description: 'raises the price in force before it; its users were told at least TOLLGATE_PRICE_INCREASE_NOTICE_DAYS ahead' }),
  })
  .meta({ id: 'ScheduledPrice' });

export const modelStatusSchema = z.enum(['preview', 'available', 'deprecated']);

/** The catalogue fields Tollgate adds to OpenAI's model object (OpenAI clients ignore them). */
export const modelCardFields = {
  description: z.string().nullable(),
  context_length: z.int().nullable().meta({ description: 'tokens' }),
  licence: z.string().nullable(),
  model_rules: z
    .object({ text: z.string(), url: z.string().nullable() })
    .nullable()
    .meta({ description: "the model's rules of use (its licence's acceptable-use terms), as the terms of service refer to them" }),
  status: modelStatusSchema,
  retires_at: instant.nullable().meta({ description: 'when a deprecated model retires; from then on requests get 404 `model_retired`' }),
};

export const modelCardSchema = z.object({ id: z.string(), ...modelCardFields }).meta({ id: 'ModelCard' });

export const pricingSchema = z
  .object({
    currency: z.literal('USD'),
    unit: z.literal('per million tokens'),
    as_of: instant,
    prices: z.array(catalogueEntrySchema),
    scheduled: z.array(scheduledPriceSchema).meta({ description: 'prices set to take effect later, with their effective dates' }),
    models: z.array(modelCardSchema),
  })
  .meta({ id: 'Pricing' });

export const modelSchema = z
  .object({ id: z.string(), object: z.literal('model'), created: z.int(), owned_by: z.literal('tollgate'), ...modelCardFields })
  .meta({ id: 'Model' });

export const modelListSchema = listOf(modelSchema).meta({ id: 'ModelList' });

// --- OpenAI-compatible answers (relayed from the upstream; the fields Tollgate relies on) ------

const usage = z.looseObject({ prompt_tokens: z.int().min(0), completion_tokens: z.int().min(0).optional(), total_tokens: z.int().min(0) });

export const chatCompletionSchema = z
  .looseObject({
    id: z.string(),
    object: z.literal('chat.completion'),
    created: z.int(),
    model: z.string(),
    choices: z.array(z.looseObject({ index: z.int(), message: z.looseObject({ role: z.string() }), finish_reason: z.string().nullable() })),
    usage: usage.optional(),
  })
  .meta({ id: 'ChatCompletion', description: "OpenAI's chat.completion, as the upstream answered it (vendor fields pass through)." });

export const completionSchema = z
  .looseObject({
    id: z.string(),
    object: z.literal('text_completion'),
    created: z.int(),
    model: z.string(),
    choices: z.array(z.looseObject({ index: z.int(), text: z.string(), finish_reason: z.string().nullable() })),
    usage: usage.optional(),
  })
  .meta({ id: 'Completion', description: "OpenAI's text_completion, as the upstream answered it." });

export const embeddingListSchema = z
  .looseObject({
    object: z.literal('list'),
    data: z.array(z.looseObject({ object: z.literal('embedding'), index: z.int(), embedding: z.union([z.array(z.number()), z.string()]) })),
    model: z.string(),
    usage: usage.optional(),
  })
  .meta({ id: 'EmbeddingList', description: "OpenAI's embedding list, as the upstream answered it." });

export const eventStreamSchema = z.string().meta({
  description:
    'Server-sent events: `data: {chunk}` lines as OpenAI streams them, ending with `data: [DONE]`. An error after the stream began arrives as a `data: {"error": {...}}` event.',
});

// --- audio ---------------------------------------------------------------------------------------

export const speechToTextFormSchema = z
  .object({
    file: z.string().meta({ format: 'binary', description: 'the audio: flac, mp3, mp4, mpeg, mpga, m4a, ogg, wav or webm' }),
    model: z.string(),
    language: z.string().optional(),
    prompt: z.string().optional(),
    response_format: z.enum(['json', 'text', 'srt', 'verbose_json', 'vtt']).optional(),
    temperature: z.string().optional().meta({ description: 'a number from 0 to 1' }),
    stream: z.enum(['true', 'false']).optional(),
  })
  .meta({ id: 'SpeechToTextForm' });

export const transcriptionSchema = z
  .looseObject({ text: z.string(), usage: z.looseObject({ type: z.enum(['duration', 'tokens']) }).optional() })
  .meta({ id: 'Transcription' });

export const transcriptTextSchema = z.string().meta({ description: 'The transcript as plain text, SRT or WebVTT.' });

export const transcriptEventStreamSchema = z.string().meta({
  description: 'Server-sent events: `transcript.text.delta` events, then `transcript.text.done` with the usage.',
});

export const audioSchema = z.string().meta({ format: 'binary', description: 'Audio bytes.' });

// --- accounts and keys --------------------------------------------------------------------------

const balanceFields = {
  balance_usd: usdSchema,
  available_usd: usdSchema,
  purchased_usd: usdSchema,
  promo_usd: usdSchema,
  reserved_usd: usdSchema,
};

export const balanceViewSchema = z.object(balanceFields);

export const accountViewSchema = z
  .object({
    account_id: z.string(),
    status: accountStatus,
    suspension_reason: suspensionReasonSchema.nullable().meta({ description: 'the most recent of suspension_reasons' }),
    suspension_reasons: z.array(suspensionReasonSchema).meta({ description: 'every reason the account is suspended for; it is open only when empty' }),
    display_name: z.string().nullable().optional().meta({ description: 'admin view only; null once the personal data is erased' }),
    email: z.string().nullable().optional().meta({ description: 'admin view only; null once the personal data is erased' }),
    ...balanceFields,
    promo_grants: z.array(z.object({ grant_id: z.string(), granted_usd: usdSchema, remaining_usd: usdSchema, expires_at: instant, expired: z.boolean() })),
    disputes: z.array(z.object({ dispute_id: z.string(), payment_intent: z.string(), amount_usd: usdSchema, status: z.enum(['open', 'won', 'lost']) })).meta({
      description: 'card disputes (chargebacks): an open one holds its amount, a lost one was debited from the purchased credit',
    }),
    disputed_usd: usdSchema.meta({ description: 'held by open disputes: neither available nor refundable' }),
    open_reservations: z.array(z.object({ request_id: z.string(), model: z.string(), operation: operationSchema, amount_usd: usdSchema, expires_at: instant })),
    totals: z.object({ topped_up_usd: usdSchema, refunded_usd: usdSchema, usage_cost_usd: usdSchema, input_tokens: tokenCount, output_tokens: tokenCount }),
    closure: z
      .object({
        closed_at: instant,
        claimable_until: instant.meta({ description: 'closure + 360 days: the remaining credit can be claimed until then' }),
        claim_period_over: z.boolean(),
        claimable_usd: usdSchema.meta({ description: 'what can still be claimed now (POST /v1/account/refund-claims); 0 once claimed or past the period' }),
        claimed_outstanding_usd: usdSchema.meta({ description: 'claimed in time and not yet paid back: support pays it out' }),
      })
      .nullable()
      .meta({ description: "a closed account's refund claim; null while the account is open" }),
  })
  .meta({ id: 'Account' });

export const accountSummarySchema = z
  .object({
    account_id: z.string(),
    status: accountStatus,
    suspension_reason: suspensionReasonSchema.nullable(),
    display_name: z.string().nullable(),
    email: z.string().nullable(),
    ...balanceFields,
  })
  .meta({ id: 'AccountSummary' });

export const keyCreatorSchema = z
  .discriminatedUnion('kind', [
    z.object({ kind: z.literal('operator') }),
    z.object({ kind: z.literal('key'), key_id: z.string() }),
    z.object({ kind: z.literal('user'), user_id: z.string() }),
  ])
  .meta({ id: 'ApiKeyCreator', description: 'who created the key: an operator, another key of the account, or a member (user)' });

export const spendLimitViewSchema = z
  .object({
    period: z.enum(['day', 'month', 'total']).meta({ description: "day and month are UTC calendar days and months; total is the key's whole life" }),
    amount_usd: usdSchema,
    spent_usd: usdSchema.meta({ description: "charged for the key's requests decided in the current window" }),
    held_usd: usdSchema.meta({ description: "held by the key's requests in flight decided in the current window" }),
    remaining_usd: usdSchema,
    resets_at: instant.nullable().meta({ description: 'when the window starts again; null for a total limit' }),
  })
  .meta({ id: 'ApiKeySpendLimit' });

export const keySchema = z
  .object({
    key_id: z.string(),
    prefix: z.string(),
    name: z.string(),
    scopes: z.array(apiKeyScopeSchema),
    status: z.enum(['active', 'revoked']),
    created_by: keyCreatorSchema.nullable().meta({ description: 'null for keys issued before creators were recorded' }),
    spend_limit: spendLimitViewSchema.nullable(),
    expires_at: instant.nullable(),
    expired: z.boolean(),
    allowed_models: z.array(z.string()).nullable().meta({ description: 'null: every model' }),
  })
  .meta({ id: 'ApiKey' });

export const issuedKeySchema = keySchema
  .extend({ key: z.string().meta({ description: 'The secret key, tg_<id>_<secret>: shown this once, stored only as a hash' }) })
  .meta({ id: 'IssuedApiKey' });

export const revokedKeySchema = z.object({ key_id: z.string(), status: z.literal('revoked') }).meta({ id: 'RevokedApiKey' });

export const requestViewSchema = z
  .object({
    request_id: z.string(),
    status: z.enum(['settled', 'released', 'expired']),
    at: instant,
    key_id: z.string().nullable(),
    model: z.string().nullable(),
    operation: operationSchema.nullable(),
    outcome: z.string().nullable().meta({ description: 'settled: the charged outcome; released: why nothing was charged' }),
    reserved_usd: usdSchema,
    cost_usd: usdSchema,
    usage: z
      .object({
        input_tokens: tokenCount,
        output_tokens: tokenCount,
        audio_seconds: z.string().optional().meta({ description: 'transcription, translation: seconds of audio charged, e.g. "1.686"' }),
        input_characters: tokenCount.optional().meta({ description: 'speech: input characters charged' }),
        estimated: z.boolean(),
      })
      .nullable(),
    upstream: z.string().nullable(),
    http_status: z.int().nullable(),
    stream: z.boolean().nullable(),
    latency_ms: z.int().nullable(),
    time_to_first_token_ms: z.int().nullable(),
  })
  .meta({ id: 'RequestRecord', description: "One ended request's metadata (never its content)." });

// --- admin --------------------------------------------------------------------------------------

export const createdAccountSchema = z.object({ account_id: z.string(), promo_grant_id: z.string().nullable() }).meta({ id: 'CreatedAccount' });

export const manualTopUpSchema = z
  .object({
    account_id: z.string(),
    payment_reference: z.string(),
    applied: z.boolean().meta({ description: 'false when this reference was already credited (200)' }),
    amount_usd: usdSchema,
    ...balanceFields,
  })
  .meta({ id: 'ManualTopUp' });

export const payoutSchema = z
  .object({
    account_id: z.string(),
    payout_id: z.string(),
    applied: z.boolean().meta({ description: 'false when this payout was already recorded (200)' }),
    amount_usd: usdSchema,
    status: accountStatus,
    ...balanceFields,
  })
  .meta({ id: 'Payout' });

export const promoGrantResultSchema = z
  .object({ account_id: z.string(), grant_id: z.string(), amount_usd: usdSchema, expires_at: instant, ...balanceFields })
  .meta({ id: 'PromoGrant' });

export const promoRevocationSchema = z
  .object({
    account_id: z.string(),
    grant_id: z.string(),
    revoked_usd: usdSchema,
    remaining_usd: usdSchema.meta({ description: "the grant's unspent remainder after the revocation" }),
    ...balanceFields,
  })
  .meta({ id: 'PromoRevocation' });

export const maximumBalanceSchema = z
  .object({ account_id: z.string(), maximum_balance_usd: usdSchema, default_maximum_balance_usd: usdSchema, raised: z.boolean(), ...balanceFields })
  .meta({ id: 'MaximumBalance' });

export const accountStatusSchema = z
  .object({ account_id: z.string(), status: accountStatus, suspension_reason: suspensionReasonSchema.nullable() })
  .meta({ id: 'AccountStatus' });

const priceRow = z.object({
  operation: operationSchema,
  version: z.int(),
  input_usd_per_million: usdSchema,
  output_usd_per_million: usdSchema,
  usd_per_audio_second: usdSchema.optional(),
  usd_per_million_characters: usdSchema.optional(),
  effective_at: instant,
  in_force: z.boolean(),
});

export const adminModelSchema = z
  .object({
    id: z.string(),
    operations: z.array(operationSchema),
    max_output_tokens: z.int(),
    retired: z.boolean(),
    prices: z.array(priceRow),
    ...modelCardFields,
  })
  .meta({ id: 'AdminModel' });

export const retiredModelSchema = z.object({ id: z.string(), retired: z.literal(true) }).meta({ id: 'RetiredModel' });

export const priceSetSchema = z
  .object({
    model: z.string(),
    operation: operationSchema,
    version: z.int(),
    input_usd_per_million: usdSchema,
    output_usd_per_million: usdSchema,
    usd_per_audio_second: usdSchema.optional(),
    usd_per_million_characters: usdSchema.optional(),
    effective_at: instant,
    increase: z.boolean(),
    short_notice_reason: z.string().optional().meta({ description: 'the reason given for an increase with less than the required notice (audited)' }),
  })
  .meta({ id: 'PriceSet' });

// --- finance and compliance ---------------------------------------------------------------------

export const statementSchema = z
  .object({
    object: z.literal('statement'),
    account_id: z.string(),
    opening_balance: usdSchema,
    closing_balance: usdSchema,
    data: z.array(
      z.object({
        occurred_at: instant,
        event_id: z.string(),
        type: z.string(),
        reference: z.string().nullable(),
        purchased_change: usdSchema,
        promo_change: usdSchema,
        amount: usdSchema,
        balance: usdSchema,
      }),
    ),
  })
  .meta({ id: 'Statement', description: 'Money movements in [from, to); also served as text/csv when asked by Accept.' });

export const statementCsvSchema = z.string().meta({ description: 'The same statement as CSV (one line per movement).' });

export const balanceAsOfSchema = z
  .object({
    object: z.literal('balance'),
    account_id: z.string(),
    as_of: instant,
    purchased: usdSchema,
    promo: usdSchema,
    balance: usdSchema,
    reserved: usdSchema,
    available: usdSchema,
    negative: z.boolean(),
  })
  .meta({ id: 'BalanceAsOf' });

export const usageSchema = listOf(
  z
    .object({
      day: z.string(),
      key_id: z.string(),
      model: z.string(),
      operation: z.string(),
      requests: z.int(),
      input_tokens: z.int(),
      output_tokens: z.int(),
      audio_seconds: z.number().min(0).meta({ description: 'seconds of audio charged (transcription, translation), to the millisecond' }),
      input_characters: z.int().meta({ description: 'input characters charged (speech)' }),
      cost: usdSchema,
      errors: z.int(),
      average_latency_ms: z.number().nullable(),
    })
    .meta({ id: 'UsageLine' }),
).meta({ id: 'Usage' });

const chainFields = { entries: z.int(), anchor_entry_no: z.string() };

export const auditSchema = z
  .object({
    object: z.literal('list'),
    data: z.array(
      z
        .object({
          entry_no: z.string(),
          position: z.object({ tx: z.string(), seq: z.string() }),
          event_id: z.string(),
          occurred_at: instant,
          actor: z.object({ kind: z.string(), id: z.string() }),
          action: z.string(),
          target: z.object({ kind: z.string(), id: z.string() }),
          reason: z.string().nullable(),
          correlation_id: z.string(),
          details: z.unknown().meta({ description: 'what the act changed (amounts, reasons; never personal data)' }),
          hash: z.string(),
        })
        .meta({ id: 'AuditEntry' }),
    ),
    has_more: z.boolean(),
    chain: z.union([
      z.object({ verified: z.literal(true), ...chainFields, head_entry_no: z.string(), head_hash: z.string() }),
      z.object({ verified: z.literal(false), ...chainFields, first_broken_entry_no: z.string(), problem: z.string(), message: z.string() }),
    ]),
  })
  .meta({ id: 'AuditLog', description: 'Audit entries with the verification of their hash chain.' });

export const retentionPlanSchema = z
  .object({
    object: z.literal('retention.plan'),
    as_of: instant,
    check_interval_s: z
      .number()
      .meta({ description: 'how often the gateway looks whether something is due; what is due goes within one interval of its date' }),
    items: z.array(
      z
        .object({
          category: z.enum(['audit_entries', 'request_metadata', 'personal_data', 'wallet_transactions']),
          subject: z.string().meta({ description: 'what it is about, never personal data: a day of the request or audit log, an account id' }),
          count: z.number().int().nullable(),
          expires_at: instant.nullable().meta({ description: 'when it is deleted or erased; null: kept' }),
          due: z.boolean(),
          action: z.enum(['purge', 'erase_personal_data', 'keep']),
        })
        .meta({ id: 'RetentionItem' }),
    ),
    last_run: z
      .object({
        run_id: z.string(),
        as_of: instant,
        request_log_entries_deleted: z.string(),
        audit_entries_deleted: z.string(),
        audit_anchor_entry_no: z.string().nullable(),
        personal_data_erased_accounts: z.number().int(),
      })
      .nullable()
      .meta({ description: 'what the last retention run deleted, by category (counts only); null before the first' }),
  })
  .meta({ id: 'RetentionPlan', description: 'What Tollgate deletes or erases when, soonest first, and the last retention run.' });

// --- billing ------------------------------------------------------------------------------------

export const checkoutSchema = z
  .object({ object: z.literal('billing.top_up'), account_id: z.string(), amount_usd: usdSchema, checkout_session_id: z.string(), url: z.url() })
  .meta({ id: 'CheckoutTopUp', description: 'A Stripe Checkout Session to pay the top-up; the credit arrives through the webhook.' });

const refundFields = {
  object: z.literal('billing.refund'),
  refund_id: z.string(),
  requested_usd: usdSchema,
  refunded_usd: usdSchema,
  parts: z.array(
    z.object({
      payment_intent: z.string(),
      amount_usd: usdSchema,
      stripe_refund_id: z.string().nullable(),
      status: z.enum(['recorded', 'pending', 'failed', 'not_recorded']),
    }),
  ),
};

export const refundSchema = z
  .object({ account_id: z.string(), ...refundFields, ...z.object(balanceFields).partial().shape })
  .meta({ id: 'Refund', description: '200 refunded, 202 waiting for Stripe, 502 Stripe refused or the ledger could not record it.' });

export const closedAccountSchema = z
  .object({
    account_id: z.string(),
    status: accountStatus,
    refund: z.object(refundFields).nullable(),
    /** on 200: how many active keys the closure revoked (every key of a closed account is refused anyway) */
    keys_revoked: z.number().int().min(0).optional(),
    personal_data_erase_due_at: z
      .string()
      .nullable()
      .optional()
      .meta({ description: "on 200: when the retention worker erases the account's personal data (crypto-shredding), 30 days after closure" }),
    ...z.object(balanceFields).partial().shape,
  })
  .meta({ id: 'AccountClosure', description: '200 closed; 202/502 not closed yet because the refund of remaining credit is pending or failed.' });

export const billingDocumentsSchema = z
  .object({
    object: z.literal('list'),
    data: z.array(
      z.object({
        object: z.enum(['billing.invoice', 'billing.receipt']),
        id: z.string(),
        number: z.string().nullable(),
        status: z.string(),
        subtotal_usd: usdSchema.meta({ description: 'net of tax: the credit' }),
        tax_usd: usdSchema,
        total_usd: usdSchema,
        reverse_charge: z.boolean(),
        reference: z.string().nullable().meta({ description: "a manual credit's reference (bank transfer)" }),
        created_at: z.string(),
        download_url: z.string().nullable().meta({ description: "this API's route to the PDF (a redirect)" }),
        document_url: z.string().nullable().meta({ description: "Stripe's link to the PDF itself (for a browser)" }),
      }),
    ),
  })
  .meta({ id: 'BillingDocuments' });

export const taxIdSchema = z
  .object({
    object: z.literal('billing.tax_id'),
    vat_id: z.string().nullable(),
    verification: z.string().nullable().meta({ description: "Stripe's verification: pending, verified, unverified, unavailable" }),
    reverse_charge: z.boolean(),
  })
  .meta({ id: 'TaxId' });

export const refundClaimSchema = z
  .object({
    object: z.literal('billing.refund_claim'),
    account_id: z.string(),
    claim_id: z.string(),
    claimed_usd: usdSchema,
    refund: z.object(refundFields).nullable().meta({ description: 'the card refunds made for the claim; null when no card could take any' }),
    outstanding_usd: usdSchema.meta({ description: 'claimed and not yet paid back: paid by support with a payout, also after the 360 days' }),
  })
  .meta({ id: 'RefundClaim' });

export const forfeitureSchema = z.object({ account_id: z.string(), forfeited_usd: usdSchema, ...balanceFields }).meta({ id: 'Forfeiture' });

export const terminationSchema = z
  .object({
    account_id: z.string(),
    status: z.literal('closed'),
    for_abuse: z.boolean(),
    keys_revoked: z.number().int().min(0),
    refund: z
      .object(refundFields)
      .nullable()
      .meta({ description: 'the refund of purchased credit to the cards (not for abuse); null when there was none to make' }),
    forfeited_usd: usdSchema.meta({ description: 'purchased credit forfeited (for abuse only)' }),
    ...balanceFields,
  })
  .meta({ id: 'AccountTermination' });

const autoTopUpAttempt = z.object({
  attempt_id: z.string(),
  status: z.string(),
  amount_usd: usdSchema.nullable(),
  reason: z.string().nullable(),
  created_at: instant,
});

export const autoTopUpSchema = z
  .object({
    object: z.literal('auto_top_up'),
    enabled: z.boolean(),
    threshold_usd: usdSchema.nullable(),
    amount_usd: usdSchema.nullable(),
    account_status: accountStatus,
    suspension_reason: suspensionReasonSchema.nullable(),
    pending_attempt: z.object({ attempt_id: z.string(), amount_usd: usdSchema }).nullable(),
    last_failure: z.object({ attempt_id: z.string(), reason: z.string().nullable(), amount_usd: usdSchema.nullable(), at: instant }).nullable(),
    recent_attempts: z.array(autoTopUpAttempt),
  })
  .meta({ id: 'AutoTopUp' });

const thresholdView = z.union([z.object({ usd: usdSchema }), z.object({ percent_of_last_top_up: z.int() })]);

export const alertsSchema = z
  .object({
    object: z.literal('low_balance_alerts'),
    url: z.string(),
    thresholds: z.array(thresholdView),
    signing_secret: z.string().optional().meta({ description: 'Only in the answer to PUT: the secret that signs notices, shown once' }),
  })
  .meta({ id: 'LowBalanceAlerts' });

export const alertsDeletedSchema = z.object({ object: z.literal('low_balance_alerts'), deleted: z.literal(true) }).meta({ id: 'LowBalanceAlertsDeleted' });

export const noticesSchema = listOf(
  z
    .object({
      notice_id: z.string(),
      threshold: z.unknown(),
      available_usd: usdSchema,
      occurred_at: instant,
      status: z.string(),
      attempts: z.array(
        z.object({ attempt: z.int(), attempted_at: instant, http_status: z.int().nullable(), outcome: z.string(), error: z.string().nullable() }),
      ),
    })
    .meta({ id: 'LowBalanceNotice' }),
).meta({ id: 'LowBalanceNotices' });

export const webhookReceiptSchema = z
  .object({
    received: z.literal(true),
    event_id: z.string(),
    duplicate: z.boolean().meta({ description: 'true when this event id was already processed (nothing changes again)' }),
    outcome: z.string(),
  })
  .meta({ id: 'WebhookReceipt' });

// --- the route files' types and these schemas agree ---------------------------------------------

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Deep<T> = T extends readonly (infer U)[] ? Deep<U>[] : T extends object ? { -readonly [K in keyof T]: Deep<T[K]> } : T;
const agree = <T extends true>(): T => true as T;

// Widened where the schema is stricter than the type (string formats, enums of strings).
agree<Same<keyof z.infer<typeof accountViewSchema>, keyof AccountView>>();
agree<Same<keyof z.infer<typeof accountSummarySchema>, keyof AccountSummary>>();
agree<Same<Deep<z.infer<typeof keySchema>>, Deep<KeyView>>>();
agree<Same<keyof z.infer<typeof requestViewSchema>, keyof RequestView>>();
agree<Same<keyof z.infer<typeof catalogueEntrySchema>, keyof CatalogueEntry>>();
agree<Same<keyof z.infer<typeof errorSchema>['error'], keyof ApiErrorBody['error']>>();
// ApiErrorType plus the types adapters/inference (clientError) answers for upstream failures.
agree<Same<z.infer<typeof errorSchema>['error']['type'], ApiErrorBody['error']['type'] | 'upstream_error' | 'upstream_unavailable'>>();

// --- notices and status -------------------------------------------------------------------------

const noticeKind = z.enum([
  'price_increase',
  'model_retirement',
  'maintenance',
  'terms_change',
  'incident',
  'low_balance',
  'auto_top_up_receipt',
  'auto_top_up_failed',
  'suspension',
  'refund',
]);

const noticeFields = {
  id: z.string(),
  kind: noticeKind,
  essential: z.boolean().meta({ description: 'cannot be turned off' }),
  subject: z.string(),
  body: z.string(),
  effective_at: instant,
  ends_at: instant.nullable(),
  about: z.string().nullable().meta({ description: 'what it is about: a model id, an incident id' }),
  published_at: instant,
};

export const noticeSchema = z.object({ ...noticeFields, read: z.boolean() }).meta({ id: 'Notice' });
export const adminNoticeSchema = z
  .object({ ...noticeFields, audience: z.int().nullable().meta({ description: 'accounts addressed; null: every account' }) })
  .meta({ id: 'AdminNotice' });
export const noticeReadSchema = z.object({ id: z.string(), read: z.literal(true) }).meta({ id: 'NoticeRead' });
export const noticePreferenceSchema = z.object({ kind: noticeKind, essential: z.boolean(), enabled: z.boolean() }).meta({ id: 'NoticePreference' });
export const postedNoticeSchema = z
  .object({
    id: z.string(),
    kind: z.enum(['maintenance', 'terms_change', 'incident']),
    subject: z.string(),
    effective_at: instant,
    ends_at: instant.nullable(),
  })
  .meta({ id: 'PostedNotice' });
export const incidentUpdateSchema = z
  .object({ id: z.string(), incident_id: z.string(), subject: z.string(), resolved: z.boolean(), posted_at: instant })
  .meta({ id: 'IncidentUpdate' });

export const statusSchema = z
  .object({
    as_of: instant,
    target: z.number().meta({ description: 'the monthly uptime target, 0.995' }),
    state: z.enum(['operational', 'degraded', 'maintenance']),
    models: z.array(
      z.object({
        id: z.string(),
        state: z.enum(['operational', 'down', 'maintenance']),
        uptime_30d: z.number(),
        uptime_90d: z.number(),
        meets_target_30d: z.boolean(),
        down_minutes_30d: z.int(),
        endpoints: z.array(z.object({ endpoint: z.string(), requests_30d: z.int(), failed_30d: z.int(), availability_30d: z.number() })),
      }),
    ),
    maintenance: z.array(
      z.object({ id: z.string(), subject: z.string(), body: z.string(), starts_at: instant, ends_at: instant.nullable(), in_progress: z.boolean() }),
    ),
    incidents: z.array(
      z.object({
        id: z.string(),
        subject: z.string(),
        started_at: instant,
        resolved_at: instant.nullable(),
        updates: z.array(z.object({ id: z.string(), body: z.string(), posted_at: instant })),
      }),
    ),
  })
  .meta({ id: 'Status' });
