/** Every refusal of the API key decider, by name. */
export type ApiKeyError =
  | { readonly error: 'api_key_already_issued'; readonly keyId: string }
  | { readonly error: 'api_key_not_found' }
  /** rename or revoke after revocation: a revoked key never comes back, and a second revoke is refused so the caller learns it was already revoked */
  | { readonly error: 'api_key_revoked' }
  | { readonly error: 'api_key_name_invalid' }
  | { readonly error: 'api_key_scopes_invalid'; readonly scopes: readonly string[] }
  /** the hash looks like the secret itself, not a bcrypt hash: refused so no secret is stored */
  | { readonly error: 'api_key_hash_not_bcrypt' }
  /** a limits change that names no limit */
  | { readonly error: 'no_limit_given' }
  | { readonly error: 'spend_limit_negative'; readonly amount: bigint }
  /** spend limits are whole cents (amounts are micro-USD: a multiple of 10,000) */
  | { readonly error: 'spend_limit_not_whole_cents'; readonly amount: bigint }
  /** a new expiry must lie ahead: a key is not created, or changed, already expired */
  | { readonly error: 'expiry_not_in_future'; readonly expiresAt: string; readonly now: string }
  /** an allowlist is 1 to 100 distinct model ids (null, not empty, allows every model) */
  | { readonly error: 'allowed_models_invalid'; readonly count: number };
