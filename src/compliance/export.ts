import type { Pool } from 'pg';
import { accountStreamId, availableOf, balanceOf, fold, accountDecider, apiKeyDecider, apiKeyStreamId, formatUsd } from '../../domain';
import { domainEventCodec, type DomainEvent, type Json } from '../../domain/events';
import type { PersonalDataVault } from '../ports/personal-data-vault';
import type { EventStore } from '../ports/event-store';
import { queryAudit } from './audit-log';
import { recordPersonalDataViewed } from './personal-data-access';
import type { CommandMetadata } from '../../domain/events/metadata';
import { currentPersonalDataCiphertexts, keyIdsOf, readPersonalField } from './personal-data';

/** Fields of stored events that are ciphertexts or secrets' derivatives: exported decrypted or not at all. */
const WITHHELD_FIELDS = new Set(['displayNameCiphertext', 'emailCiphertext', 'secretHash']);

function withoutWithheld(data: Json): Json {
  if (data === null || typeof data !== 'object' || Array.isArray(data)) return data;
  return Object.fromEntries(Object.entries(data).filter(([k]) => !WITHHELD_FIELDS.has(k)));
}

async function tableExists(pool: Pool, table: string): Promise<boolean> {
  const { rows } = await pool.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [table]);
  return rows[0]?.t != null;
}

/**
 * Everything Tollgate holds about an account and its people, for a data-access request: personal
 * data (decrypted while the key exists), the keys' metadata (no hashes), every ledger event of the
 * account (its transactions and requests' metadata), usage (tokens, audio milliseconds and speech
 * input characters, as the prices count them), audit entries about it and its keys,
 * and its retention schedule. Null when the account was never opened.
 */
export async function exportAccount(
  deps: { readonly pool: Pool; readonly store: EventStore<DomainEvent>; readonly vault: PersonalDataVault },
  accountId: string,
  /** who is exporting and why: recorded as PersonalDataViewed (what: export) before the export is returned */
  access: { readonly metadata: CommandMetadata; readonly purpose?: string | null },
) {
  const { pool, store, vault } = deps;
  const { events } = await store.readStream(accountStreamId(accountId));
  if (events.length === 0) return null;
  const now = new Date().toISOString();
  const decider = accountDecider();
  const state = fold(
    decider,
    events.map((e) => e.event as Parameters<typeof decider.evolve>[1]),
  );

  const ciphertexts = currentPersonalDataCiphertexts(events.map((e) => e.event));
  const displayName = ciphertexts ? await readPersonalField(vault, accountId, ciphertexts.displayNameCiphertext) : null;
  const email = ciphertexts ? await readPersonalField(vault, accountId, ciphertexts.emailCiphertext) : null;

  await recordPersonalDataViewed(store, [{ accountId, displayName, email }], { what: 'export', purpose: access.purpose ?? null, metadata: access.metadata });

  const keys = [];
  for (const keyId of await keyIdsOf(pool, accountId)) {
    const { events: keyEvents } = await store.readStream(apiKeyStreamId(keyId));
    const keyState = fold(
      apiKeyDecider,
      keyEvents.map((e) => e.event as Parameters<typeof apiKeyDecider.evolve>[1]),
    );
    if (keyState.status === 'not_issued') continue;
    const revoked = keyEvents.find((e) => e.event.type === 'ApiKeyRevoked');
    keys.push({
      key_id: keyId,
      prefix: keyState.prefix,
      name: keyState.name,
      scopes: keyState.scopes,
      status: keyState.status,
      issued_at: keyEvents[0]!.event.metadata.occurredAt,
      revoked_at: revoked?.event.metadata.occurredAt ?? null,
      revocation_reason: revoked?.event.type === 'ApiKeyRevoked' ? revoked.event.data.reason : null,
      created_by: keyState.createdBy,
      limits: {
        spend_limit:
          keyState.limits.spendLimit === null ? null : { period: keyState.limits.spendLimit.period, amount_usd: formatUsd(keyState.limits.spendLimit.amount) },
        expires_at: keyState.limits.expiresAt,
        allowed_models: keyState.limits.allowedModels,
      },
    });
  }

  const usage = (await tableExists(pool, 'usage_daily'))
    ? (
        await pool.query<Record<string, unknown>>(
          `SELECT to_char(day, 'YYYY-MM-DD') AS day, key_id, model, operation, requests::text, input_tokens::text, output_tokens::text,
                  audio_ms::text AS audio_milliseconds, input_characters::text,
                  cost::text AS cost_micro_usd, errors::text FROM usage_daily WHERE account_id = $1 ORDER BY day, key_id, model, operation`,
          [accountId],
        )
      ).rows
    : [];
  const keyTargets = keys.map((k) => k.key_id);
  const audit = [];
  for (const target of [accountId, ...keyTargets]) audit.push(...(await queryAudit(pool, { target, limit: 100_000 })));
  audit.sort((a, b) => (BigInt(a.entryNo) < BigInt(b.entryNo) ? -1 : 1));
  const retention = (await tableExists(pool, 'personal_data_retention'))
    ? ((await pool.query('SELECT closed_at, closure_reason, erase_due_at, erased_at FROM personal_data_retention WHERE account_id = $1', [accountId]))
        .rows[0] ?? null)
    : null;

  return {
    account_id: accountId,
    exported_at: now,
    status: state.status,
    personal_data: {
      display_name: displayName,
      email,
      erased: state.personalDataErased,
      // null with erased=false: the stored value is not readable (e.g. written without the vault)
    },
    balance: { balance_usd: formatUsd(balanceOf(state, now)), available_usd: formatUsd(availableOf(state, now)) },
    keys,
    ledger_events: events.map((e) => {
      const encoded = domainEventCodec.encode(e.event);
      return {
        revision: e.revision.toString(),
        type: e.type,
        occurred_at: e.event.metadata.occurredAt,
        actor: e.event.metadata.actor,
        correlation_id: e.event.metadata.correlationId,
        data: withoutWithheld(encoded.data),
      };
    }),
    usage,
    audit_entries: audit.map(({ prevHash: _p, hash: _h, ...entry }) => entry),
    retention,
  };
}
