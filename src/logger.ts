import pino, { type Logger } from 'pino';

/**
 * One JSON line per event on stdout. Nothing that could hold content or secrets is logged:
 * callers pass metadata only, and these paths are redacted in case one slips through.
 */
export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { service: 'tollgate' },
    redact: {
      paths: ['authorization', 'req.headers.authorization', '*.authorization', 'apiKey', '*.apiKey', 'secret', '*.secret', 'password', '*.password'],
      censor: '[redacted]',
    },
  });
}
