import { describeFailure } from './cli/errors';
import { ConfigError, loadConfig, type Config } from './config';
import { startGateway, type Gateway } from './gateway';
import { createLogger } from './logger';
import { standardRoutes } from './routes';

/** `npm start`: the gateway on the configured database, or on an embedded one. */
async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) fail(error.message, 2);
    throw error;
  }
  const log = createLogger(config.LOG_LEVEL);

  // SIGTERM/SIGINT: drain (open requests finish and settle, bounded by TOLLGATE_DRAIN_TIMEOUT_S),
  // then stop the workers and the database. A second signal cuts the open connections at once.
  // A signal during start-up takes effect once started, so the database is never left running.
  let gateway: Gateway | undefined;
  let stopping: string | undefined;
  const shutdown = async (signal: string) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: cutting the open connections');
      gateway?.server.closeAllConnections();
      return;
    }
    stopping = signal;
    if (!gateway) return; // still starting: shut down right after
    log.info({ signal, drainTimeoutS: config.TOLLGATE_DRAIN_TIMEOUT_S }, 'shutting down: draining open requests');
    try {
      await gateway.close();
    } catch (error) {
      log.error({ err: { name: (error as Error).name, message: describeFailure(error) } }, 'shutdown failed');
      process.exit(1);
    }
    log.info('stopped');
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));

  gateway = await startGateway(config, log, standardRoutes).catch((error: unknown) => fail(describeFailure(error), 1));
  log.info({ url: gateway.url, database: gateway.database.description }, 'tollgate is listening');
  if (stopping) {
    const signal = stopping;
    stopping = undefined;
    await shutdown(signal);
  }
}

function fail(message: string, code: number): never {
  process.stderr.write(`tollgate: ${message}\n`);
  process.exit(code);
}

void main();
