import type { Actor } from '../domain/events/metadata';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import bcrypt from 'bcrypt';
import { accountStreamId } from '../domain/account';
import { apiKeyStreamId, isApiKeyExpired, NO_LIMITS, type ApiKeyScope, type KeyCreator, type KeyLimits, type LimitChanges } from '../domain/api-key';
import type { CommandMetadata } from '../domain/events/metadata';
import type { Ledger } from './ledger';

/**
 * API keys look like `tg_<keyId>_<secret>`. The key id is public (it names the key's stream and
 * shows in logs as the prefix); the secret is shown once and stored only as a bcrypt hash.
 *
 * bcrypt is deliberately slow, so each process verifies a key with bcrypt once and then
 * remembers a SHA-256 of the whole key: later requests compare hashes in constant time. A
 * revocation anywhere reaches every process through the global log (forget), within the
 * subscription's latency.
 */
export interface VerifiedKey {
  readonly keyId: string;
  readonly accountId: string;
  readonly scopes: readonly ApiKeyScope[];
  /** safe to log: `tg_<keyId>` */
  readonly prefix: string;
  /** spend limit, expiry, model allowlist (domain/api-key); kept current by the live log */
  readonly limits: KeyLimits;
  /** set when a signed-in person (a dashboard session, src/identity) acts instead of a key */
  readonly userId?: string;
}

/** Who the events of a request record as their actor: the signed-in person, else the key. */
export function actorOfKey(key: VerifiedKey): Actor {
  return key.userId !== undefined ? { kind: 'user', userId: key.userId } : { kind: 'customer_key', keyId: key.keyId };
}

/** What a token proves: a live key, or why not (`expired`: a real key past its expiry time). */
export type KeyCheck =
  | { readonly ok: true; readonly key: VerifiedKey }
  | { readonly ok: false; readonly reason: 'invalid' }
  | { readonly ok: false; readonly reason: 'expired'; readonly expiresAt: string };

export interface IssuedKey {
  readonly keyId: string;
  readonly prefix: string;
  /** the whole key: shown to its owner once, never stored or logged */
  readonly secret: string;
}

const KEY_PATTERN = /^tg_([A-Za-z0-9]{16})_([A-Za-z0-9_-]{43})$/;

/** The bootstrapped admin key has this id; its secret may be any string of 32+ characters. */
export const ADMIN_KEY_ID = 'admin';
/** Admin keys belong to no customer account. */
export const OPERATORS_ACCOUNT = 'operators';
const BCRYPT_COST = 10;

export function newKeyId(): string {
  // 16 base62-ish characters from 12 random bytes: enough that ids never collide.
  return randomBytes(12).toString('base64').replace(/[+/]/g, 'x').slice(0, 16);
}

export function keyPrefix(keyId: string): string {
  return `tg_${keyId}`;
}

export class ApiKeys {
  private readonly verified = new Map<string, { digest: Buffer; key: VerifiedKey }>();
  /** bcrypt verifications under way, by key id and token digest */
  private readonly verifying = new Map<string, Promise<VerifiedKey | null>>();

  constructor(
    private readonly ledger: Ledger,
    /** when a key's expiry is judged; a seam for tests */
    private readonly clock: () => Date = () => new Date(),
  ) {}

  async issue(input: {
    accountId: string;
    name: string;
    scopes: readonly ApiKeyScope[];
    metadata: CommandMetadata;
    keyId?: string;
    secret?: string;
    createdBy?: KeyCreator;
    limits?: LimitChanges;
  }) {
    const keyId = input.keyId ?? newKeyId();
    const secret = input.secret ?? `${keyPrefix(keyId)}_${randomBytes(32).toString('base64url')}`;
    const secretHash = await bcrypt.hash(secret, BCRYPT_COST);
    const result = await this.ledger.apiKeys.handle(apiKeyStreamId(keyId), {
      type: 'IssueApiKey',
      data: {
        keyId,
        accountId: input.accountId,
        prefix: keyPrefix(keyId),
        secretHash,
        name: input.name,
        scopes: input.scopes,
        ...(input.createdBy === undefined ? {} : { createdBy: input.createdBy }),
        ...(input.limits === undefined ? {} : { limits: input.limits }),
      },
      metadata: input.metadata,
    });
    if (!result.ok) return result;
    return { ok: true as const, key: { keyId, prefix: keyPrefix(keyId), secret } satisfies IssuedKey };
  }

  /**
   * The key behind an Authorization bearer token, or null for anything not a live key. A key of
   * a closed account is not live even when its own revocation was never written (closing revokes
   * every key, but that is a write per key and one may fail): the account's state is the second
   * lock, read from the account handler's in-memory state (no database read once it is cached).
   */
  async verify(token: string): Promise<VerifiedKey | null> {
    const checked = await this.check(token);
    return checked.ok ? checked.key : null;
  }

  /** verify(), saying why a real key is refused when it has expired (the API answers it apart). */
  async check(token: string): Promise<KeyCheck> {
    const key = await this.verifyKey(token);
    if (!key) return { ok: false, reason: 'invalid' };
    if (key.accountId !== OPERATORS_ACCOUNT) {
      const { state } = await this.ledger.accounts.load(accountStreamId(key.accountId));
      if (state.status === 'closed') return { ok: false, reason: 'invalid' };
    }
    if (isApiKeyExpired(key.limits, this.clock().toISOString())) return { ok: false, reason: 'expired', expiresAt: key.limits.expiresAt! };
    return { ok: true, key };
  }

  private async verifyKey(token: string): Promise<VerifiedKey | null> {
    const claimed = claimedKey(token);
    if (!claimed) return null;
    const { keyId, digest } = claimed;
    const cached = this.verified.get(keyId);
    if (cached) return timingSafeEqual(cached.digest, digest) ? cached.key : null;

    // Concurrent first requests with one new key share one bcrypt run instead of one each:
    // bcrypt takes tens of milliseconds of CPU, and a burst would otherwise stall the gateway.
    const flight = `${keyId}:${digest.toString('hex')}`;
    let pending = this.verifying.get(flight);
    if (!pending) {
      pending = this.verifyOnce(token, keyId, digest).finally(() => this.verifying.delete(flight));
      this.verifying.set(flight, pending);
    }
    return pending;
  }

  private async verifyOnce(token: string, keyId: string, digest: Buffer): Promise<VerifiedKey | null> {
    const { state } = await this.ledger.apiKeys.load(apiKeyStreamId(keyId));
    if (state.status !== 'active') return null;
    if (!(await bcrypt.compare(token, state.secretHash))) return null;
    // A revocation or a limits change may have landed while bcrypt ran: cache what is current.
    const { state: now } = await this.ledger.apiKeys.load(apiKeyStreamId(keyId));
    if (now.status !== 'active') return null;
    const key: VerifiedKey = { keyId, accountId: now.accountId, scopes: now.scopes, prefix: now.prefix, limits: now.limits ?? NO_LIMITS };
    this.verified.set(keyId, { digest, key });
    return key;
  }

  /**
   * Whether this process has already verified exactly this token (no bcrypt, no database: a
   * constant-time hash comparison). Lets a client over its authentication-failure allowance
   * keep using the keys it has proved.
   */
  isVerified(token: string): boolean {
    const claimed = claimedKey(token);
    const cached = claimed && this.verified.get(claimed.keyId);
    return cached ? timingSafeEqual(cached.digest, claimed.digest) : false;
  }

  async revoke(keyId: string, reason: string, metadata: CommandMetadata) {
    const result = await this.ledger.apiKeys.handle(apiKeyStreamId(keyId), { type: 'RevokeApiKey', data: { reason }, metadata });
    this.forget(keyId);
    return result;
  }

  /**
   * Reads every verified key's stream again and forgets those no longer active or whose limits
   * changed: for when this
   * process may have missed a revocation (its announcements were cut off). Never rejects; a key
   * whose stream cannot be read now is forgotten too (it is verified again on its next use).
   */
  async recheckVerified(): Promise<void> {
    for (const keyId of [...this.verified.keys()]) {
      const streamId = apiKeyStreamId(keyId);
      this.ledger.apiKeys.invalidate(streamId);
      const cached = this.verified.get(keyId)?.key.limits;
      const current = await this.ledger.apiKeys.load(streamId).then(
        ({ state }) => state.status === 'active' && JSON.stringify(state.limits, bigints) === JSON.stringify(cached, bigints),
        () => false,
      );
      if (!current) this.forget(keyId);
    }
  }

  /** Called for every revocation and limits change seen in the global log or announced, from any process. */
  forget(keyId: string): void {
    this.verified.delete(keyId);
    this.ledger.apiKeys.invalidate(apiKeyStreamId(keyId));
  }
}

function bigints(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

/** The key id a token claims (the admin key's id for a long opaque token) and its SHA-256. */
function claimedKey(token: string): { keyId: string; digest: Buffer } | undefined {
  const match = KEY_PATTERN.exec(token);
  if (!match && (token.length < 32 || token.length > 256)) return undefined;
  return { keyId: match ? match[1]! : ADMIN_KEY_ID, digest: createHash('sha256').update(token).digest() };
}
