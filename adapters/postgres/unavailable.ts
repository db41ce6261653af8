/**
 * Whether an error means "the database cannot be reached right now" (stopped, restarting,
 * connection lost or refused, no connection within the pool's timeout), as opposed to a bug
 * or a bad query. The HTTP layer answers these with 503, which clients retry, instead of 500.
 */

// SQLSTATE classes and codes: 08 connection exception, 57P01-57P03 shutting down / starting up,
// 53300 too many connections.
const unavailableSqlStates = /^(08...|57P0[123]|53300)$/;
const unavailableErrnos = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);
// node-postgres reports a lost or never-made connection only in words.
const unavailableMessages = [
  'Connection terminated',
  'timeout exceeded when trying to connect',
  'Client has encountered a connection error and is not queryable',
  'Client was closed and is not queryable',
  'Connection ended',
];

export function isDatabaseUnavailable(error: unknown, depth = 0): boolean {
  if (typeof error !== 'object' || error === null || depth > 3) return false;
  const { code, message, cause, errors } = error as { code?: unknown; message?: unknown; cause?: unknown; errors?: unknown };
  if (typeof code === 'string' && (unavailableSqlStates.test(code) || unavailableErrnos.has(code))) return true;
  if (typeof message === 'string' && unavailableMessages.some((words) => message.startsWith(words))) return true;
  // Node's AggregateError (every address refused) and wrapped errors.
  if (Array.isArray(errors) && errors.some((inner) => isDatabaseUnavailable(inner, depth + 1))) return true;
  return cause !== undefined && isDatabaseUnavailable(cause, depth + 1);
}
