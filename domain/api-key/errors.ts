/** Every refusal of the API key decider, by name. */
export type ApiKeyError =
  | { readonly error: 'api_key_already_issued'; readonly keyId: string }
  | { readonly error: 'api_key_not_found' }
  /** rename or revoke after revocation: a revoked key never comes back, and a second revoke is refused so the caller learns it was already revoked */
  | { readonly error: 'api_key_revoked' }
  | { readonly error: 'api_key_name_invalid' }
  | { readonly error: 'api_key_scopes_invalid'; readonly scopes: readonly string[] }
  /** the hash looks like the secret itself, not a bcrypt hash: refused so no secret is stored */
  | { readonly error: 'api_key_hash_not_bcrypt' };
