import pino, { type DestinationStream, type Logger, type LoggerOptions } from 'pino';

/** The gateway's pino options: JSON lines, and the paths redacted in case a secret slips in. */
export const LOGGER_OPTIONS: LoggerOptions = {
  base: { service: 'tollgate' },
  redact: {
    paths: ['authorization', 'req.headers.authorization', '*.authorization', 'apiKey', '*.apiKey', 'secret', '*.secret', 'password', '*.password'],
    censor: '[redacted]',
  },
};

/**
 * Stdout, written asynchronously (SonicBoom): a log call copies its line into a buffer and
 * returns; one write is in flight at a time and the lines logged meanwhile go out together in
 * the next. Synchronous writes cost ~25% more CPU per line, and holding lines back until 4 KiB
 * gathered saved nothing measurable (bench/logging.ts). Pino flushes what is left
 * synchronously when the process exits, process.exit() included, so a clean stop loses no line
 * (test/e2e/log-on-stop.test.ts).
 */
export function loggerDestination(fd = 1): DestinationStream {
  return pino.destination({ dest: fd, sync: false });
}

/**
 * One JSON line per event on stdout. Nothing that could hold content or secrets is logged:
 * callers pass metadata only, and these paths are redacted in case one slips through.
 */
export function createLogger(level: string): Logger {
  return pino({ ...LOGGER_OPTIONS, level }, loggerDestination());
}
