import type { Request, RequestHandler, Response } from 'express';
import type { ApiKeyScope } from '../../domain/api-key';
import type { ApiKeys, VerifiedKey } from '../../src/api-keys';
import { ApiError, apiKeyExpired, invalidApiKey } from './openai/errors';

const LOCALS_KEY = 'tollgateKey';
const LOCALS_SESSION = 'tollgateSessionPrincipal';

/**
 * A signed-in person's dashboard session stands in for a key on the account routes: the
 * dashboard's session middleware puts it here (roles already checked there), and authenticate()
 * takes it when the request carries no Authorization header.
 */
export function actAsSession(res: Response, principal: VerifiedKey): void {
  res.locals[LOCALS_SESSION] = principal;
}

/** The key of `Authorization: Bearer <key>`; a missing or malformed header is a 401. */
export function bearerToken(req: Request): string {
  return bearerOf(req.get('authorization'));
}

/** The key in an Authorization header's value; a missing or malformed header is a 401. */
export function bearerOf(header: string | undefined): string {
  if (!header) throw invalidApiKey('missing');
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match) throw invalidApiKey('invalid');
  return match[1]!;
}

/** Bearer-key authentication with a required scope; the verified key goes in res.locals. */
export function authenticate(keys: ApiKeys, scope: ApiKeyScope): RequestHandler {
  return async (req, res, next) => {
    const session = req.get('authorization') === undefined ? (res.locals[LOCALS_SESSION] as VerifiedKey | undefined) : undefined;
    let key: VerifiedKey;
    if (session) key = session;
    else key = await verifyBearer(keys, req.get('authorization'));
    requireScope(key, scope);
    res.locals[LOCALS_KEY] = key;
    next();
  };
}

/** The verified key of an Authorization header's value; 401 when it does not verify (shared with the lean /v1 path). */
export async function verifyBearer(keys: ApiKeys, header: string | undefined): Promise<VerifiedKey> {
  const checked = await keys.check(bearerOf(header));
  if (!checked.ok) throw checked.reason === 'expired' ? apiKeyExpired(checked.expiresAt) : invalidApiKey('invalid');
  return checked.key;
}

/** 403 for a key without the scope. */
export function requireScope(key: VerifiedKey, scope: ApiKeyScope): void {
  if (!key.scopes.includes(scope)) {
    throw new ApiError(403, 'invalid_request_error', 'insufficient_permissions', null, `This key does not have the ${scope} scope.`);
  }
}

export function keyOf(res: Response): VerifiedKey {
  const key = res.locals[LOCALS_KEY] as VerifiedKey | undefined;
  if (!key) throw new Error('route mounted without authenticate()');
  return key;
}
