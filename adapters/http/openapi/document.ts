import { z } from 'zod';
import {
  createDocument,
  type ZodOpenApiOperationObject,
  type ZodOpenApiPathsObject,
  type ZodOpenApiResponseObject,
  type ZodOpenApiResponsesObject,
} from 'zod-openapi';
import { chatCompletionRequestSchema, completionRequestSchema, embeddingRequestSchema, speechRequestSchema } from '../openai/requests';
import { keyLimitsSchema, newKeySchema, renameKeySchema, requestsQuerySchema } from '../routes/account';
import {
  addModelSchema,
  createAccountSchema,
  describeModelSchema,
  issueKeySchema,
  maximumBalanceSchema,
  promoGrantSchema,
  promoRevocationSchema,
  revokeKeySchema,
  searchAccountsSchema,
  setPriceSchema,
  suspendSchema,
  topUpSchema as manualTopUpRequestSchema,
  payoutSchema as payoutRequestSchema,
} from '../routes/admin';
import { alertsSchema as alertsRequestSchema, autoTopUpSchema as autoTopUpRequestSchema, noticesQuerySchema } from '../routes/auto-top-up';
import {
  adminRefundClaimSchema,
  adminRefundSchema,
  forfeitSchema,
  refundClaimSchema,
  refundSchema as refundRequestSchema,
  terminateSchema,
  vatIdSchema,
  topUpSchema as checkoutRequestSchema,
} from '../routes/billing';
import { auditQuerySchema } from '../routes/compliance';
import { noticeListQuerySchema, noticePreferencesSchema, postNoticeSchema } from '../routes/notices';
import { incidentUpdateSchema as incidentUpdateRequestSchema } from '../routes/status';
import { balanceQuerySchema, periodSchema } from '../routes/finance';
import * as out from './responses';
import { identityPaths } from './identity';
import { adminUserPaths } from './admin-users';

/**
 * The OpenAPI 3.1 document of Tollgate's HTTP API, built by zod-openapi from the zod schemas
 * the routes validate with (request bodies and queries, imported from the route files) and
 * the schemas of their answers (./responses.ts). Served at /openapi.json and rendered at /docs.
 *
 * Every status a route can answer is listed; errors all have OpenAI's shape (Error).
 */

// --- errors -------------------------------------------------------------------------------------

const errorWords: Record<number, string> = {
  400: 'Malformed body or parameter (nothing is reserved): `param` names it. Also a body that is not UTF-8 JSON, is larger than TOLLGATE_MAX_BODY_BYTES or nests deeper than 64.',
  401: 'No key, or a key that does not verify (unknown, revoked, malformed): code `invalid_api_key`.',
  403: 'The key lacks the scope (`insufficient_permissions`), or the account is suspended or closed.',
  404: "No such thing (or not this account's): e.g. `account_not_found`, `api_key_not_found`, `model_not_found`.",
  409: "A decider refused the change: `code` is the refusal's name (e.g. `balance_limit_exceeded`, `model_already_exists`, `account_closed`).",
  429: 'Too many failed authentications from this client address (`rate_limit_exceeded`, with Retry-After).',
  500: 'An unexpected error; the detail is logged under the request id, never sent.',
  502: 'Stripe refused or failed.',
  503: 'The database cannot be reached (`service_unavailable`, with Retry-After; nothing was charged), or the capability is not configured.',
};

type Status = 400 | 401 | 403 | 404 | 409 | 429 | 500 | 502 | 503 | 504;

const retryAfter = z.string().meta({ description: 'Seconds to wait before retrying' });

function errorResponse(description: string, headers?: z.ZodObject): ZodOpenApiResponseObject {
  return { description, content: { 'application/json': { schema: out.errorSchema } }, ...(headers ? { headers } : {}) };
}

/** The error answers a route gives, with the usual words unless told otherwise. */
function errors(statuses: readonly Status[], words: Partial<Record<Status, string>> = {}): ZodOpenApiResponsesObject {
  return Object.fromEntries(statuses.map((s) => [String(s), errorResponse(words[s] ?? errorWords[s] ?? 'Error')]));
}

/** Every authenticated route: bad key, missing scope, too many failures, unexpected, database down. */
const authenticated = [401, 403, 429, 500, 503] as const;

const json = <T extends z.ZodType>(description: string, schema: T) => ({ description, content: { 'application/json': { schema } } });

// --- inference ----------------------------------------------------------------------------------

const inferenceErrors: ZodOpenApiResponsesObject = {
  ...errors([400, 401, 404, 500, 502], {
    400: "Malformed request (nothing is reserved; `param` names the parameter), `max_tokens` above the model's limit, or the upstream refused it (`upstream_rejected`, `content_filter`).",
    404: 'The model is not in the price book (`model_not_found`), or was retired (`model_retired`: the message names when; `x-should-retry: false`); param `model`.',
    502: 'The upstream failed, answered something that is not JSON, or cut the stream before any output (`upstream_error`, `upstream_stream_cut`). Released: nothing is charged.',
  }),
  '403': errorResponse(
    "The key lacks the `inference` scope, the model is not in the key's model allowlist (`model_not_allowed`, param `model`), or the account is suspended (`account_suspended`) or closed (`account_closed`); `x-should-retry: false`.",
    z.object({ 'x-should-retry': z.literal('false').optional() }),
  ),
  '429': errorResponse(
    'Either **insufficient credit** (type and code `insufficient_quota`, `x-should-retry: false`: the reservation does not fit the available balance; the message states the balance and what the request needs), ' +
      "or the **key's spend limit** (type `insufficient_quota`, code `key_spend_limit_reached`, `x-should-retry: false`: what the key spent and holds in the limit's window plus this request would pass the limit; the message says when the window resets), " +
      "or a per-key limit (`rate_limit_exceeded`, type `requests` or `tokens`, with `x-ratelimit-*`, `retry-after` and `retry-after-ms`), or the model's upstreams at capacity (`model_at_capacity`, `retry-after`; never queued), or too many failed authentications from the client address.",
    z.object({
      'x-should-retry': z
        .literal('false')
        .optional()
        .meta({ description: "present when retrying cannot help (no credit; the key's spend limit; a request larger than the whole per-minute budget)" }),
      'retry-after': retryAfter.optional(),
      'retry-after-ms': z.string().optional().meta({ description: 'Milliseconds to wait, as the OpenAI SDKs read it' }),
    }),
  ),
  '503': errorResponse(
    'No upstream is reachable or configured for the model (`upstream_unavailable`, or `upstream_overloaded` when the upstream answered 429), or the database cannot be reached (`service_unavailable`). Nothing is charged.',
    z.object({ 'retry-after': retryAfter.optional() }),
  ),
  '504': errorResponse('The upstream did not begin to answer within TOLLGATE_UPSTREAM_HEADERS_TIMEOUT_S (`upstream_timeout`). Nothing is charged.'),
};

const rateLimitHeaders = z.object({
  'x-ratelimit-limit-requests': z.string().optional(),
  'x-ratelimit-remaining-requests': z.string().optional(),
  'x-ratelimit-reset-requests': z.string().optional(),
  'x-ratelimit-limit-tokens': z.string().optional(),
  'x-ratelimit-remaining-tokens': z.string().optional(),
  'x-ratelimit-reset-tokens': z.string().optional(),
});

function inference(summary: string, description: string, body: z.ZodType, answer: z.ZodType, streams: boolean): ZodOpenApiOperationObject {
  return {
    tags: ['OpenAI-compatible'],
    summary,
    description,
    security: [{ customerKey: [] }],
    requestBody: { required: true, content: { 'application/json': { schema: body } } },
    responses: {
      '200': {
        description: streams ? 'The answer; with `"stream": true`, server-sent events.' : 'The answer.',
        headers: rateLimitHeaders,
        content: {
          'application/json': { schema: answer },
          ...(streams ? { 'text/event-stream': { schema: out.eventStreamSchema } } : {}),
        },
      },
      ...inferenceErrors,
    },
  };
}

function speechToText(summary: string, operation: 'transcription' | 'translation'): ZodOpenApiOperationObject {
  return {
    tags: ['OpenAI-compatible'],
    summary,
    description:
      `OpenAI's ${operation === 'transcription' ? 'transcriptions' : 'translations'}, relayed to the model's upstream. The file is streamed to the upstream as it arrives (never written to disk, never logged), as multipart: send \`model\` (and \`stream\`) before the file, as the openai clients do; a form whose file comes first is held in memory, up to the limit, until the model is known. ` +
      "Priced per second of audio: the duration is read from the file's header before anything is reserved (a file that cannot be read is a 400; one longer than the model's `maxAudioSeconds` too). " +
      'Settled on the usage the upstream reports (`{"type": "duration", "seconds"}` at the per-second price, or tokens at the token prices), else on the measured duration, marked estimated.',
    security: [{ customerKey: [] }],
    requestBody: { required: true, content: { 'multipart/form-data': { schema: out.speechToTextFormSchema } } },
    responses: {
      '200': {
        description: 'json and verbose_json: JSON; text, srt and vtt: text; `stream=true`: server-sent `transcript.text.*` events.',
        headers: rateLimitHeaders,
        content: {
          'application/json': { schema: out.transcriptionSchema },
          'text/plain': { schema: out.transcriptTextSchema },
          'text/event-stream': { schema: out.transcriptEventStreamSchema },
        },
      },
      '413': errorResponse(
        'The file is larger than TOLLGATE_MAX_AUDIO_BYTES (code `request_too_large`, param `file`): refused before it is read when the Content-Length says so (nothing reserved), else when the stream passes the limit (the upstream request aborted, the reservation released, nothing charged).',
      ),
      ...inferenceErrors,
    },
  };
}

const charging =
  ' Before the request reaches an upstream its estimated cost is reserved from the prepaid credit; when it ends, the exact cost from the token counts is charged (see the README for the charge policy).';

// --- the document -------------------------------------------------------------------------------

const idParam = z.object({ id: z.string().meta({ description: 'account id, e.g. acct_…' }) });
const keyIdParam = z.object({ keyId: z.string().meta({ description: 'key id' }) });

function customer(scope: 'account_read' | 'account_write', op: Omit<ZodOpenApiOperationObject, 'security'>): ZodOpenApiOperationObject {
  return {
    ...op,
    security: [{ customerKey: [] }],
    description: `${op.description ?? ''}${op.description ? '\n\n' : ''}Needs a key with the \`${scope}\` scope; always the key's own account.`,
  };
}

function admin(op: Omit<ZodOpenApiOperationObject, 'security'>): ZodOpenApiOperationObject {
  return { ...op, security: [{ adminKey: [] }] };
}

const ADMIN_FORBIDDEN =
  'The key lacks the admin scope (`insufficient_permissions`), or the caller is an admin user signed in to the dashboard whose operator role does not allow this call ' +
  '(`insufficient_role`, type `invalid_request_error`): finance reads statements, balances, the journal and the verification; compliance the audit log, retention, accounts and exports; ' +
  'operator everything else. The bootstrap admin key has every role.';

/**
 * Every /admin operation: the admin key or an admin user's dashboard session (with
 * X-Tollgate-Dashboard: 1), and the 403 of a role that does not reach it.
 */
function withAdminAccess(all: ZodOpenApiPathsObject): ZodOpenApiPathsObject {
  return Object.fromEntries(
    Object.entries(all).map(([path, item]) => {
      if (!path.startsWith('/admin/')) return [path, item];
      const ops = Object.fromEntries(
        Object.entries(item as Record<string, ZodOpenApiOperationObject>).map(([method, op]) => [
          method,
          { ...op, security: [{ adminKey: [] }, { dashboardSession: [] }], responses: { ...op.responses, '403': errorResponse(ADMIN_FORBIDDEN) } },
        ]),
      );
      return [path, ops];
    }),
  );
}

const paths: ZodOpenApiPathsObject = {
  // OpenAI-compatible ------------------------------------------------------------------------
  '/v1/chat/completions': {
    post: inference(
      'Create a chat completion',
      `OpenAI's chat completions, relayed to the model's upstream.${charging}`,
      chatCompletionRequestSchema,
      out.chatCompletionSchema,
      true,
    ),
  },
  '/v1/completions': {
    post: inference(
      'Create a completion',
      `OpenAI's (legacy) completions, relayed to the model's upstream.${charging}`,
      completionRequestSchema,
      out.completionSchema,
      true,
    ),
  },
  '/v1/embeddings': {
    post: inference(
      'Create embeddings',
      `OpenAI's embeddings, relayed to the model's upstream.${charging}`,
      embeddingRequestSchema,
      out.embeddingListSchema,
      false,
    ),
  },
  '/v1/audio/transcriptions': { post: speechToText('Create a transcription', 'transcription') },
  '/v1/audio/translations': { post: speechToText('Create a translation (into English)', 'translation') },
  '/v1/audio/speech': {
    post: {
      tags: ['OpenAI-compatible'],
      summary: 'Create speech',
      description:
        "OpenAI's text to speech, relayed to the model's upstream; the audio bytes are streamed back as they arrive. Priced per million input characters (`input` counted in Unicode code points, at most the model's `maxInputCharacters`, default 4096). Reserved before dispatch from the input's length; settled on it, or, when the client leaves mid-speech, on the share of the audio relayed of the length the upstream declared.",
      security: [{ customerKey: [] }],
      requestBody: { required: true, content: { 'application/json': { schema: speechRequestSchema } } },
      responses: {
        '200': {
          description: 'The audio, streamed as the upstream produces it, in the content type it sends.',
          headers: rateLimitHeaders,
          content: Object.fromEntries(
            ['audio/mpeg', 'audio/wav', 'audio/ogg', 'audio/opus', 'audio/aac', 'audio/flac', 'audio/pcm', 'application/octet-stream'].map((type) => [
              type,
              { schema: out.audioSchema },
            ]),
          ),
        },
        ...inferenceErrors,
      },
    },
  },
  '/v1/models': {
    get: {
      tags: ['OpenAI-compatible'],
      summary: 'List models',
      description: 'The models the price book offers now. Any valid key with the `inference` scope.',
      security: [{ customerKey: [] }],
      responses: { '200': json('The offered models.', out.modelListSchema), ...errors(authenticated) },
    },
  },
  '/v1/models/{model}': {
    get: {
      tags: ['OpenAI-compatible'],
      summary: 'Retrieve a model',
      description: 'One offered model with its catalogue card (description, context length, licence, Model Rules, status). The id may hold `/`.',
      security: [{ customerKey: [] }],
      requestParams: { path: z.object({ model: z.string().meta({ description: 'model id' }) }) },
      responses: {
        '200': json('The model.', out.modelSchema),
        ...errors([...authenticated, 404], { 404: 'No such model (`model_not_found`), or it was retired (`model_retired`, the message names the date).' }),
      },
    },
  },

  // Public (prices and operations) ------------------------------------------------------------------
  '/pricing': {
    get: {
      tags: ['Public'],
      summary: 'Prices in force',
      description:
        "Public: every offered model and operation with its price per million tokens, the prices scheduled to take effect later (with their dates), and each model's catalogue card.",
      responses: { '200': json('The prices in force now.', out.pricingSchema), ...errors([429, 500, 503]) },
    },
  },
  '/status.json': {
    get: {
      tags: ['Public'],
      summary: 'Service status',
      description:
        'Public: current state, 30- and 90-day uptime per model against the 99.5% target (announced maintenance left out), availability per endpoint, maintenance windows, incidents with their updates. The page is at /status.',
      responses: { '200': json('The status.', out.statusSchema), ...errors([429, 500, 503]) },
    },
  },
  '/status': {
    get: {
      tags: ['Public'],
      summary: 'Status page (HTML)',
      responses: { '200': { description: 'The status page.', content: { 'text/html': { schema: z.string() } } }, ...errors([429, 500, 503]) },
    },
  },
  '/healthz': {
    get: { tags: ['Public'], summary: 'Liveness', responses: { '200': json('The process serves HTTP.', out.healthSchema), ...errors([429]) } },
  },
  '/readyz': {
    get: {
      tags: ['Public'],
      summary: 'Readiness',
      description: 'Ready when the database answers and at least one upstream accepts connections.',
      responses: {
        '200': json('Ready.', out.readinessSchema),
        '503': json('Not ready; the fields say which part is missing.', out.readinessSchema),
        ...errors([429]),
      },
    },
  },
  '/metrics': {
    get: {
      tags: ['Public'],
      summary: 'Prometheus metrics',
      responses: { '200': { description: 'Prometheus text exposition format.', content: { 'text/plain': { schema: z.string() } } }, ...errors([429]) },
    },
  },
  '/openapi.json': {
    get: {
      tags: ['Public'],
      summary: 'This document',
      responses: { '200': json('The OpenAPI 3.1 description of this API.', z.looseObject({ openapi: z.string() })), ...errors([429]) },
    },
  },

  // Customer ---------------------------------------------------------------------------------
  '/v1/account': {
    get: customer('account_read', {
      tags: ['Account'],
      summary: 'The account',
      description: 'Balance, promo grants, open reservations (requests still being served show as held) and totals. No personal data.',
      responses: { '200': json('The account.', out.accountViewSchema), ...errors([...authenticated, 404]) },
    }),
  },
  '/v1/account/keys': {
    get: customer('account_read', {
      tags: ['Account'],
      summary: "The account's keys",
      responses: { '200': json('Every key ever issued to the account (never the secrets).', out.listOf(out.keySchema)), ...errors(authenticated) },
    }),
    post: customer('account_write', {
      tags: ['Account'],
      summary: 'Issue a key',
      description: 'Scopes default to inference, account_read and account_write; never admin.',
      requestBody: { required: true, content: { 'application/json': { schema: newKeySchema } } },
      responses: { '201': json('The new key, with its secret shown this once.', out.issuedKeySchema), ...errors([...authenticated, 400, 404, 409]) },
    }),
  },
  '/v1/account/keys/{keyId}': {
    patch: customer('account_write', {
      tags: ['Account'],
      summary: 'Rename a key',
      requestParams: { path: keyIdParam },
      requestBody: { required: true, content: { 'application/json': { schema: renameKeySchema } } },
      responses: { '200': json('The renamed key.', out.keySchema), ...errors([...authenticated, 400, 404, 409]) },
    }),
    delete: customer('account_write', {
      tags: ['Account'],
      summary: 'Revoke a key',
      description: "Takes effect on every gateway process within milliseconds. Another account's key answers 404.",
      requestParams: { path: keyIdParam },
      responses: { '200': json('Revoked.', out.revokedKeySchema), ...errors([...authenticated, 404, 409]) },
    }),
  },
  '/v1/account/keys/{keyId}/limits': {
    patch: customer('account_write', {
      tags: ['Account'],
      summary: "Set, change or clear a key's limits",
      description:
        'A spend limit (USD per UTC day, per UTC month, or in total; whole cents), an expiry time (in the future), a model allowlist (models of the price book). Each field absent stays as it is; null clears it. ' +
        'The spend limit is enforced when each request reserves its cost, with what the key spent and holds in the window, so concurrent requests cannot pass it; past it, requests get 429 `key_spend_limit_reached`. ' +
        'An expired key gets 401 `api_key_expired`; a model outside the allowlist 403 `model_not_allowed`. A key that has limits cannot change its own (403 `cannot_change_own_limits`). ' +
        'Refused input (400) changes nothing. The new limits apply on every gateway process within milliseconds.',
      requestParams: { path: keyIdParam },
      requestBody: { required: true, content: { 'application/json': { schema: keyLimitsSchema } } },
      responses: { '200': json('The key with its limits and its spend in the current window.', out.keySchema), ...errors([...authenticated, 400, 404, 409]) },
    }),
  },
  '/v1/account/notices': {
    get: customer('account_read', {
      tags: ['Account'],
      summary: 'Notices',
      description:
        "What the account was told, newest first: price increases on models it used, retirements, maintenance, terms changes, incidents, and operational notices (suspension, refund, auto top-up). `unread=true`: the dashboard's banner (kinds the account turned off left out).",
      requestParams: { query: noticeListQuerySchema },
      responses: { '200': json('Notices.', out.listOf(out.noticeSchema)), ...errors([...authenticated, 400]) },
    }),
  },
  '/v1/account/notices/{id}/read': {
    post: customer('account_write', {
      tags: ['Account'],
      summary: 'Mark a notice read',
      requestParams: { path: z.object({ id: z.string() }) },
      responses: { '200': json('Read.', out.noticeReadSchema), ...errors([...authenticated, 404]) },
    }),
  },
  '/v1/account/notice-preferences': {
    get: customer('account_read', {
      tags: ['Account'],
      summary: 'Which notices the account receives',
      responses: { '200': json('Every kind.', out.listOf(out.noticePreferenceSchema)), ...errors(authenticated) },
    }),
    put: customer('account_write', {
      tags: ['Account'],
      summary: 'Turn notice kinds on or off',
      description:
        'Non-essential kinds can be turned off (no email, no banner; still listed). Essential kinds (price increases, model retirements, terms changes, suspension) cannot: 409 `notice_kind_essential`, nothing changed.',
      requestBody: { required: true, content: { 'application/json': { schema: noticePreferencesSchema } } },
      responses: { '200': json('Every kind, after the change.', out.listOf(out.noticePreferenceSchema)), ...errors([...authenticated, 400, 409]) },
    }),
  },
  '/v1/account/requests': {
    get: customer('account_read', {
      tags: ['Account'],
      summary: 'Recent requests',
      description: 'The most recent ended requests, newest first: metadata and cost, never content.',
      requestParams: { query: requestsQuerySchema },
      responses: { '200': json('Recent requests.', out.listOf(out.requestViewSchema)), ...errors([...authenticated, 400, 404]) },
    }),
  },
  '/v1/account/transactions': {
    get: customer('account_read', {
      tags: ['Account'],
      summary: 'Statement of the account',
      description: 'Money movements in [from, to) (ISO-8601 instants or UTC dates), as JSON or, with `Accept: text/csv`, CSV.',
      requestParams: { query: periodSchema },
      responses: {
        '200': {
          description: 'The statement.',
          content: { 'application/json': { schema: out.statementSchema }, 'text/csv': { schema: out.statementCsvSchema } },
        },
        ...errors([...authenticated, 400, 404]),
      },
    }),
  },
  '/v1/usage': {
    get: customer('account_read', {
      tags: ['Account'],
      summary: 'Usage per day, key, model and operation',
      requestParams: { query: periodSchema },
      responses: { '200': json('Usage lines.', out.usageSchema), ...errors([...authenticated, 400]) },
    }),
  },
  '/v1/account/close': {
    post: customer('account_write', {
      tags: ['Billing'],
      summary: 'Close the account',
      description:
        'Refunds the remaining purchased credit to the cards it came from, then closes the account and revokes every key of it (a key of a closed account is refused even where its revocation failed). Refused while requests are in flight.',
      responses: {
        '200': json('Closed.', out.closedAccountSchema),
        '202': json('Not closed yet: the refund is pending at Stripe; closing again finishes it.', out.closedAccountSchema),
        '502': json('Not closed: Stripe refused or failed the refund.', out.closedAccountSchema),
        ...errors([...authenticated, 404, 409], {
          503: `${errorWords[503]} Also \`payments_not_configured\` when credit would need a refund but payments are off.`,
        }),
      },
    }),
  },

  '/v1/account/refund-claims': {
    post: {
      tags: ['Billing'],
      summary: "Claim a closed account's remaining credit",
      description:
        "Within 360 days of closure, by the account's owner or a billing member, signed in to the dashboard: a closed account's keys are revoked, so the claim is authorised by the person's session cookie with the `X-Tollgate-Dashboard: 1` header, not by a key. Anyone else gets 403 (`refund_claim_not_authorised`; another role, `insufficient_role`). Omit `amount_usd` to claim everything claimable (`closure.claimable_usd` of GET /v1/account). Records the claim, then refunds it to the cards as far as they take it; `outstanding_usd` is paid by support with a payout. A repeated claim finds nothing left: 409 `nothing_to_claim`.",
      requestBody: { required: true, content: { 'application/json': { schema: refundClaimSchema } } },
      responses: { '201': json('Claimed.', out.refundClaimSchema), ...errors([400, 403, 409, 429, 500, 503]) },
    },
  },

  // Billing ----------------------------------------------------------------------------------
  '/v1/billing/top-ups': {
    post: customer('account_write', {
      tags: ['Billing'],
      summary: 'Top up by card (Stripe Checkout)',
      description:
        'Amount net of VAT, in whole cents, at least TOLLGATE_MIN_TOP_UP_USD; the credit arrives through the Stripe webhook. 503 `payments_not_configured` without STRIPE_SECRET_KEY.',
      requestBody: { required: true, content: { 'application/json': { schema: checkoutRequestSchema } } },
      responses: { '201': json('A Checkout Session to pay.', out.checkoutSchema), ...errors([...authenticated, 400, 404, 409, 502]) },
    }),
  },
  '/v1/billing/refunds': {
    post: customer('account_write', {
      tags: ['Billing'],
      summary: 'Refund purchased credit',
      description: 'All refundable credit, or `amount_usd`, back to the cards it came from. 503 `payments_not_configured` without STRIPE_SECRET_KEY.',
      requestBody: { required: false, content: { 'application/json': { schema: refundRequestSchema } } },
      responses: {
        '200': json('Refunded.', out.refundSchema),
        '202': json('Waiting for Stripe to confirm.', out.refundSchema),
        '502': json('Stripe refused, or the ledger could not record it (an operator is alerted).', out.refundSchema),
        ...errors([...authenticated, 400, 404, 409]),
      },
    }),
  },
  '/v1/billing/invoices': {
    get: customer('account_read', {
      tags: ['Billing'],
      summary: 'Invoices and receipts',
      description:
        "Newest first: Stripe's invoices of the account's Checkout top-ups (subtotal = the credit, net of tax; tax added by Stripe Tax; `reverse_charge` with a verified EU VAT id), and a receipt for each manual credit an operator recorded (bank transfer), with its reference. `download_url` serves an invoice's PDF.",
      responses: { '200': json('The documents.', out.billingDocumentsSchema), ...errors([...authenticated, 404]) },
    }),
  },
  '/v1/billing/invoices/{id}/pdf': {
    get: customer('account_read', {
      tags: ['Billing'],
      summary: "Download an invoice's PDF",
      description: "Redirects to the invoice document at Stripe. 404 `invoice_not_found` for an id that is not one of this account's invoices.",
      requestParams: { path: z.object({ id: z.string().meta({ description: 'the invoice id (in_...)' }) }) },
      responses: {
        '302': {
          description: 'To the PDF (its URL also in the body).',
          headers: z.object({ location: z.string() }),
          content: { 'application/json': { schema: z.object({ url: z.string() }) } },
        },
        ...errors([...authenticated, 404]),
      },
    }),
  },
  '/v1/billing/tax-id': {
    get: customer('account_read', {
      tags: ['Billing'],
      summary: "The account's EU VAT id",
      responses: { '200': json('The VAT id, or nulls when none is set.', out.taxIdSchema), ...errors([...authenticated, 404]) },
    }),
    put: customer('account_write', {
      tags: ['Billing'],
      summary: "Set or remove the account's EU VAT id",
      description:
        'Stored on the Stripe customer, where Stripe Tax reads it at checkout: with an id Stripe verified (against the EU registry) of another EU country, the reverse charge applies and no VAT is added. `{"vat_id": null}` removes it. 400 `vat_id_invalid` when Stripe refuses the value.',
      requestBody: { required: true, content: { 'application/json': { schema: vatIdSchema } } },
      responses: { '200': json('Set.', out.taxIdSchema), ...errors([...authenticated, 400, 404]) },
    }),
  },
  '/v1/billing/auto-top-up': {
    get: customer('account_read', {
      tags: ['Billing'],
      summary: 'Auto top-up settings and recent attempts',
      responses: { '200': json('Settings and attempts.', out.autoTopUpSchema), ...errors([...authenticated, 404]) },
    }),
    put: customer('account_write', {
      tags: ['Billing'],
      summary: 'Configure auto top-up',
      description: 'Charge the saved card `amount_usd` when the available balance falls below `threshold_usd`; `{"enabled": false}` turns it off.',
      requestBody: { required: true, content: { 'application/json': { schema: autoTopUpRequestSchema } } },
      responses: { '200': json('The new settings.', out.autoTopUpSchema), ...errors([...authenticated, 400, 404, 409]) },
    }),
    delete: customer('account_write', {
      tags: ['Billing'],
      summary: 'Turn auto top-up off',
      responses: { '200': json('The new settings.', out.autoTopUpSchema), ...errors([...authenticated, 404, 409]) },
    }),
  },
  '/v1/billing/alerts': {
    get: customer('account_read', {
      tags: ['Billing'],
      summary: 'Low-balance alert settings',
      responses: {
        '200': json('The settings (never the secret).', out.alertsSchema),
        ...errors([...authenticated, 404], { 404: 'No alerts are configured (`alerts_not_configured`).' }),
      },
    }),
    put: customer('account_write', {
      tags: ['Billing'],
      summary: 'Configure low-balance alerts',
      description: 'Signed notices are POSTed to `url` (https) when the available balance falls below a threshold.',
      requestBody: { required: true, content: { 'application/json': { schema: alertsRequestSchema(false) } } },
      responses: { '200': json('The settings and the signing secret, shown this once.', out.alertsSchema), ...errors([...authenticated, 400, 404, 409]) },
    }),
    delete: customer('account_write', {
      tags: ['Billing'],
      summary: 'Remove low-balance alerts',
      responses: { '200': json('Removed.', out.alertsDeletedSchema), ...errors(authenticated) },
    }),
  },
  '/v1/billing/alerts/notices': {
    get: customer('account_read', {
      tags: ['Billing'],
      summary: 'Recent low-balance notices and their delivery attempts',
      requestParams: { query: noticesQuerySchema },
      responses: { '200': json('Notices, newest first.', out.noticesSchema), ...errors([...authenticated, 400]) },
    }),
  },
  '/webhooks/stripe': {
    post: {
      tags: ['Billing'],
      summary: "Stripe's webhook",
      description:
        'For Stripe only. The `Stripe-Signature` is verified against the raw body; a verified event is recorded once and answered 200 whatever its outcome. Top-ups credit exactly once per PaymentIntent. `charge.dispute.created` holds the disputed amount and suspends the account (`payment_dispute`); `charge.dispute.closed` releases the hold and, won, reinstates unless another reason keeps the account suspended, or, lost, debits the purchased credit (possibly into debt). Each dispute step applies once, in any delivery order. A refund made in the Stripe Dashboard is applied once by its refund id when it succeeds; beyond what is refundable the rest takes the purchased credit into debt.',
      requestParams: { header: z.object({ 'stripe-signature': z.string().meta({ description: "Stripe's signature of the raw body" }) }) },
      requestBody: {
        required: true,
        content: {
          'application/json': { schema: z.looseObject({ id: z.string(), type: z.string(), data: z.looseObject({}) }).meta({ description: 'A Stripe event' }) },
        },
      },
      responses: {
        '200': json('Received (or received before: `duplicate`).', out.webhookReceiptSchema),
        ...errors([400, 429, 500, 503], {
          400: 'The signature does not verify, is missing or too old, or the event is malformed: nothing changes.',
          503: `${errorWords[503]} Also \`payments_not_configured\` without STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET.`,
        }),
      },
    },
  },

  // Admin ------------------------------------------------------------------------------------
  '/admin/accounts': {
    get: admin({
      tags: ['Admin'],
      summary: 'Search accounts',
      description:
        '`q` matches ids, names and emails (case-insensitive); newest first, a page of `limit` at a time. Each account answered is recorded as seen (audit `personal_data.viewed`).',
      requestParams: { query: searchAccountsSchema },
      responses: { '200': json('Matching accounts.', out.pageOf(out.accountSummarySchema)), ...errors([...authenticated, 400]) },
    }),
    post: admin({
      tags: ['Admin'],
      summary: 'Open an account',
      requestBody: { required: true, content: { 'application/json': { schema: createAccountSchema } } },
      responses: { '201': json('Opened.', out.createdAccountSchema), ...errors([...authenticated, 400, 409]) },
    }),
  },
  '/admin/accounts/{id}': {
    get: admin({
      tags: ['Admin'],
      summary: 'An account, with its personal data',
      requestParams: { path: idParam },
      responses: { '200': json('The account.', out.accountViewSchema), ...errors([...authenticated, 404]) },
    }),
  },
  '/admin/accounts/{id}/payouts': {
    post: admin({
      tags: ['Admin'],
      summary: 'Record a payout of credit outside the card (bank transfer)',
      description:
        'After the money was sent: records `PayoutRecorded` (method, reference, amount, reason), open or closed accounts alike. Limited to what is refundable (purchased credit less open requests and disputed amounts), which card refunds draw on too, so nothing is paid back twice: more is 409 `exceeds_refundable_credit`. The same method and reference twice records once (200, `applied: false`). Audited (`refund.payout`).',
      requestParams: { path: idParam },
      requestBody: { required: true, content: { 'application/json': { schema: payoutRequestSchema } } },
      responses: {
        '201': json('Recorded.', out.payoutSchema),
        '200': json('Already recorded under this method and reference.', out.payoutSchema),
        ...errors([...authenticated, 400, 404, 409]),
      },
    }),
  },
  '/admin/accounts/{id}/top-ups': {
    post: admin({
      tags: ['Admin'],
      summary: 'Credit a manual top-up (bank transfer, invoice)',
      description: 'The same `reference` twice credits once: the second answers 200 with `applied: false`.',
      requestParams: { path: idParam },
      requestBody: { required: true, content: { 'application/json': { schema: manualTopUpRequestSchema } } },
      responses: {
        '201': json('Credited.', out.manualTopUpSchema),
        '200': json('Already credited under this reference.', out.manualTopUpSchema),
        ...errors([...authenticated, 400, 404, 409]),
      },
    }),
  },
  '/admin/accounts/{id}/promo-grants': {
    post: admin({
      tags: ['Admin'],
      summary: 'Grant promo credit',
      requestParams: { path: idParam },
      requestBody: { required: true, content: { 'application/json': { schema: promoGrantSchema } } },
      responses: { '201': json('Granted.', out.promoGrantResultSchema), ...errors([...authenticated, 400, 404, 409]) },
    }),
  },
  '/admin/accounts/{id}/promo-grants/{grantId}/revoke': {
    post: admin({
      tags: ['Admin'],
      summary: 'Revoke promo credit',
      description:
        "Takes back an unexpired grant's unspent remainder, or `amount_usd` of it, with a reason (audited). What was spent stays spent. Refused (409) beyond the unspent remainder (`exceeds_unspent_promo`), for an expired grant (`promo_grant_already_expired`), or while requests in flight count on the credit (`promo_held_by_reservations`).",
      requestParams: { path: z.object({ id: idParam.shape.id, grantId: z.string().meta({ description: 'promo grant id' }) }) },
      requestBody: { required: true, content: { 'application/json': { schema: promoRevocationSchema } } },
      responses: { '200': json('Revoked.', out.promoRevocationSchema), ...errors([...authenticated, 400, 404, 409]) },
    }),
  },
  '/admin/accounts/{id}/maximum-balance': {
    post: admin({
      tags: ['Admin'],
      summary: "Raise one account's maximum balance",
      description:
        "Sets the most this account's balance may reach, above the default (TOLLGATE_MAX_BALANCE_USD), with a reason (audited); top-ups and auto top-ups of this account are held to it. `maximum_usd: null` returns the account to the default. Refused (409 `maximum_below_default`) below the default.",
      requestParams: { path: idParam },
      requestBody: { required: true, content: { 'application/json': { schema: maximumBalanceSchema } } },
      responses: { '200': json('Set.', out.maximumBalanceSchema), ...errors([...authenticated, 400, 404, 409]) },
    }),
  },
  '/admin/accounts/{id}/suspend': {
    post: admin({
      tags: ['Admin'],
      summary: 'Suspend an account',
      description:
        "Adds the reason to the account's suspension reasons (409 `account_already_suspended` when it is there already). The account is open only when none is left.",
      requestParams: { path: idParam },
      requestBody: { required: true, content: { 'application/json': { schema: suspendSchema } } },
      responses: { '200': json('Suspended.', out.accountStatusSchema), ...errors([...authenticated, 400, 404, 409]) },
    }),
  },
  '/admin/accounts/{id}/reinstate': {
    post: admin({
      tags: ['Admin'],
      summary: 'Reinstate a suspended account',
      description:
        "Lifts every suspension reason but `payment_dispute` while a card dispute is open (Stripe's decision ends that one); 409 `dispute_open` when that is the only reason left.",
      requestParams: { path: idParam },
      responses: { '200': json('Reinstated.', out.accountStatusSchema), ...errors([...authenticated, 404, 409]) },
    }),
  },
  '/admin/accounts/{id}/keys': {
    get: admin({
      tags: ['Admin'],
      summary: "An account's keys",
      requestParams: { path: idParam },
      responses: { '200': json('Every key issued to the account.', out.listOf(out.keySchema)), ...errors([...authenticated, 404]) },
    }),
    post: admin({
      tags: ['Admin'],
      summary: 'Issue a key to an account',
      requestParams: { path: idParam },
      requestBody: { required: false, content: { 'application/json': { schema: issueKeySchema } } },
      responses: { '201': json('The new key, with its secret shown this once.', out.issuedKeySchema), ...errors([...authenticated, 400, 404, 409]) },
    }),
  },
  '/admin/accounts/{id}/refunds': {
    post: admin({
      tags: ['Admin'],
      summary: "Refund an account's purchased credit",
      description:
        "Open or closed accounts: a closed account's remaining credit is refunded within 360 days of closure (409 `claim_period_over` after). Limited to what is refundable and what the cards can still give back (409 `exceeds_refundable_credit`).",
      requestParams: { path: idParam },
      requestBody: { required: true, content: { 'application/json': { schema: adminRefundSchema } } },
      responses: {
        '200': json('Refunded.', out.refundSchema),
        '202': json('Waiting for Stripe to confirm.', out.refundSchema),
        '502': json('Stripe refused, or the ledger could not record it.', out.refundSchema),
        ...errors([...authenticated, 400, 404, 409], { 503: `${errorWords[503]} Also \`payments_not_configured\` without STRIPE_SECRET_KEY.` }),
      },
    }),
  },
  '/admin/accounts/{id}/refund-claims': {
    post: admin({
      tags: ['Admin'],
      summary: "Claim a closed account's remaining credit for its customer",
      description:
        'Within 360 days of closure: records `RefundClaimed` for the refundable credit not yet claimed (purchased credit less any debt, open requests and disputed amounts; `amount_usd` for less), then refunds it to the cards it came from as far as they take it, in whole cents. What no card can take (bank transfer, a fraction of a cent) is `outstanding_usd`: pay it with a payout, which is accepted for a claimed amount even after the 360 days. Claimed credit is never forfeited. 409 `account_not_closed`, `claim_period_over`, `nothing_to_claim`, `exceeds_refundable_credit`. Audited (`refund.claimed`).',
      requestParams: { path: idParam },
      requestBody: { required: true, content: { 'application/json': { schema: adminRefundClaimSchema } } },
      responses: {
        '201': json('Claimed (and refunded to cards as far as they take it).', out.refundClaimSchema),
        ...errors([...authenticated, 400, 404, 409]),
      },
    }),
  },
  '/admin/accounts/{id}/forfeit-unclaimed': {
    post: admin({
      tags: ['Admin'],
      summary: 'Forfeit unclaimed credit after the claim period',
      description:
        "What the gateway's forfeiture schedule does by itself for every account 360 days after closure, for one account now: the refundable credit nobody claimed leaves the balance (`PurchasedCreditForfeited`, reason `claim_period_over`; the journal moves it to income). 409 `claim_period_not_over`, `account_not_closed`, `nothing_to_forfeit`. Audited (`credit.forfeited`).",
      requestParams: { path: idParam },
      requestBody: { required: true, content: { 'application/json': { schema: forfeitSchema } } },
      responses: { '200': json('Forfeited.', out.forfeitureSchema), ...errors([...authenticated, 400, 404, 409]) },
    }),
  },
  '/admin/accounts/{id}/terminate': {
    post: admin({
      tags: ['Admin'],
      summary: 'Terminate an account for breach of the terms',
      description:
        'Closes the account at once with the reason given and revokes every key. Unless `for_abuse`, the purchased credit is then refunded to the cards it came from (what Stripe has not confirmed is recorded by its webhook; what cannot go to a card stays owed). For abuse, the purchased credit left is forfeited. Refused (409) while requests are in flight: suspend first.',
      requestParams: { path: idParam },
      requestBody: { required: true, content: { 'application/json': { schema: terminateSchema } } },
      responses: { '200': json('Terminated.', out.terminationSchema), ...errors([...authenticated, 400, 404, 409]) },
    }),
  },
  '/admin/accounts/{id}/statement': {
    get: admin({
      tags: ['Admin'],
      summary: "An account's statement",
      description: 'Money movements in [from, to), as JSON or, with `Accept: text/csv`, CSV.',
      requestParams: { path: idParam, query: periodSchema },
      responses: {
        '200': {
          description: 'The statement.',
          content: { 'application/json': { schema: out.statementSchema }, 'text/csv': { schema: out.statementCsvSchema } },
        },
        ...errors([...authenticated, 400, 404]),
      },
    }),
  },
  '/admin/accounts/{id}/balance': {
    get: admin({
      tags: ['Admin'],
      summary: "An account's balance at an instant",
      requestParams: { path: idParam, query: balanceQuerySchema },
      responses: { '200': json('The balance as of the instant (now by default).', out.balanceAsOfSchema), ...errors([...authenticated, 400, 404]) },
    }),
  },
  '/admin/keys/{keyId}': {
    delete: admin({
      tags: ['Admin'],
      summary: 'Revoke any key',
      description: 'The bootstrapped admin key cannot be revoked here (409 `admin_key_not_revocable`).',
      requestParams: { path: keyIdParam },
      requestBody: { required: false, content: { 'application/json': { schema: revokeKeySchema } } },
      responses: { '200': json('Revoked.', out.revokedKeySchema), ...errors([...authenticated, 400, 404, 409]) },
    }),
  },
  '/admin/keys/{keyId}/limits': {
    patch: admin({
      tags: ['Admin'],
      summary: "Set, change or clear any customer key's limits",
      description:
        "As `PATCH /v1/account/keys/{keyId}/limits`, for any customer key (operators' own keys take no limits: 404). Each field absent stays as it is; null clears it; refused input (400) changes nothing.",
      requestParams: { path: keyIdParam },
      requestBody: { required: true, content: { 'application/json': { schema: keyLimitsSchema } } },
      responses: { '200': json('The key with its limits and its spend in the current window.', out.keySchema), ...errors([...authenticated, 400, 404, 409]) },
    }),
  },
  '/admin/models': {
    get: admin({
      tags: ['Admin'],
      summary: 'Models and their prices',
      description: 'Prices in force and scheduled; superseded prices are left out.',
      responses: { '200': json('Every model.', out.listOf(out.adminModelSchema)), ...errors(authenticated) },
    }),
    post: admin({
      tags: ['Admin'],
      summary: 'Add a model to the price book',
      requestBody: { required: true, content: { 'application/json': { schema: addModelSchema } } },
      responses: { '201': json('Added.', out.adminModelSchema), ...errors([...authenticated, 400, 409]) },
    }),
  },
  '/admin/models/{id}': {
    delete: admin({
      tags: ['Admin'],
      summary: 'Retire a model',
      requestParams: { path: z.object({ id: z.string().meta({ description: 'model id (URL-encoded)' }) }) },
      responses: { '200': json('Retired.', out.retiredModelSchema), ...errors([...authenticated, 404, 409]) },
    }),
  },
  '/admin/models/{id}/catalogue': {
    put: admin({
      tags: ['Admin'],
      summary: 'Describe a model (its catalogue card)',
      description:
        "Description, context length, licence, Model Rules (text and link) and status. A deprecated model names its retirement date: from then on requests for it get 404 `model_retired`. A retirement newly set or brought forward must be at least 14 days ahead (it is announced to the model's recent users meanwhile); sooner is refused (409 `retirement_notice_too_short`) unless `short_notice_reason` is given, which is audited.",
      requestParams: { path: z.object({ id: z.string().meta({ description: 'model id (URL-encoded)' }) }) },
      requestBody: { required: true, content: { 'application/json': { schema: describeModelSchema } } },
      responses: { '200': json('The model as described.', out.adminModelSchema), ...errors([...authenticated, 400, 404, 409]) },
    }),
  },
  '/admin/notices': {
    get: admin({
      tags: ['Admin'],
      summary: 'Notices published',
      description: 'Announcements (not the per-account operational notices), newest first, with how many accounts each addressed.',
      responses: { '200': json('Notices.', out.listOf(out.adminNoticeSchema)), ...errors(authenticated) },
    }),
    post: admin({
      tags: ['Admin'],
      summary: 'Post a notice to every account',
      description:
        'Maintenance at least 24 hours ahead, a terms change at least 14 days ahead (409 `notice_too_short` otherwise), an incident at any time. Shown in the dashboard and mailed (incidents and maintenance only to accounts that did not turn them off). The same `notice_id` twice makes one notice.',
      requestBody: { required: true, content: { 'application/json': { schema: postNoticeSchema } } },
      responses: { '201': json('Published.', out.postedNoticeSchema), ...errors([...authenticated, 400, 409]) },
    }),
  },
  '/admin/incidents/{id}/updates': {
    post: admin({
      tags: ['Admin'],
      summary: 'Post an update to an incident',
      description: 'Each update is a notice to every account; `resolved: true` closes the incident on the status page.',
      requestParams: { path: z.object({ id: z.string().meta({ description: "the incident's notice id" }) }) },
      requestBody: { required: true, content: { 'application/json': { schema: incidentUpdateRequestSchema } } },
      responses: { '201': json('Posted.', out.incidentUpdateSchema), ...errors([...authenticated, 400, 404]) },
    }),
  },
  '/admin/status': {
    get: admin({
      tags: ['Admin'],
      summary: 'Service status (operator)',
      responses: { '200': json('The status.', out.statusSchema), ...errors(authenticated) },
    }),
  },
  '/admin/prices': {
    post: admin({
      tags: ['Admin'],
      summary: 'Set a price',
      description:
        'USD per million tokens, in force from `effective_at` (now by default; never in the past). An increase must take effect at least TOLLGATE_PRICE_INCREASE_NOTICE_DAYS (14) days ahead, when it is announced to every account that used the model in the last 90 days; sooner is refused (409 `price_increase_notice_too_short`) unless `short_notice_reason` is given, which is audited. Decreases apply without notice.',
      requestBody: { required: true, content: { 'application/json': { schema: setPriceSchema } } },
      responses: { '201': json('The new price version.', out.priceSetSchema), ...errors([...authenticated, 400, 404, 409]) },
    }),
  },
  '/admin/audit': {
    get: admin({
      tags: ['Admin'],
      summary: 'The audit log',
      description: 'Entries matching the filters, with the verification of the hash chain so the reader knows whether to trust them.',
      requestParams: { query: auditQuerySchema },
      responses: { '200': json('Audit entries.', out.auditSchema), ...errors([...authenticated, 400]) },
    }),
  },
  '/admin/retention': {
    get: admin({
      tags: ['Admin'],
      summary: 'What goes when, and the last retention run',
      description:
        'Request-log entries and audit entries per day with the instant they are deleted (90 days), closed accounts with their erasure date (30 days after closure), what is kept (wallet transactions), and what the last run deleted, as counts by category.',
      responses: { '200': json('The retention plan.', out.retentionPlanSchema), ...errors(authenticated) },
    }),
  },
};

let built: ReturnType<typeof createDocument> | undefined;

/** The document (built once; the schemas do not change while the process runs). */
export function openApiDocument(): ReturnType<typeof createDocument> {
  built ??= createDocument({
    openapi: '3.1.0',
    info: {
      title: 'Tollgate API',
      version: '0.1.0',
      description:
        'Tollgate sells inference on open-weight models by the token from prepaid credit, and speaks the OpenAI API: use the official OpenAI SDKs with a Tollgate key and base URL `<gateway>/v1`.\n\n' +
        'Every error has OpenAI\'s shape `{"error": {"message", "type", "param", "code"}}`. Money is always a decimal string of USD (6 decimals), never a JSON number. ' +
        'Out of credit is **429 `insufficient_quota` with `x-should-retry: false`**, as OpenAI answers it, not 402.',
    },
    tags: [
      { name: 'OpenAI-compatible', description: 'As OpenAI defines them, with a Tollgate key as the Bearer token.' },
      { name: 'Account', description: "A customer key's own account." },
      { name: 'Billing', description: 'Card top-ups and refunds (Stripe), auto top-up, low-balance alerts, the Stripe webhook.' },
      { name: 'Admin', description: 'For the admin key, or an admin user signed in to the dashboard within their operator role.' },
      { name: 'Public', description: 'No key: prices, liveness, readiness, metrics and this document.' },
    ],
    components: {
      securitySchemes: {
        customerKey: { type: 'http', scheme: 'bearer', description: 'A customer key, `tg_<id>_<secret>`, with the scope the operation names.' },
        adminKey: { type: 'http', scheme: 'bearer', description: 'A key with the admin scope (the bootstrapped TOLLGATE_ADMIN_KEY or one issued with it).' },
        dashboardSession: {
          type: 'apiKey',
          in: 'cookie',
          name: 'tollgate_session',
          description: "A person's dashboard session (POST /dashboard/api/sign-in); calls also need X-Tollgate-Dashboard: 1.",
        },
      },
    },
    paths: withAdminAccess({ ...paths, ...adminUserPaths, ...identityPaths }),
  });
  return built;
}
