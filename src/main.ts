import { ConfigError, loadConfig, type Config } from './config';
import { startGateway } from './gateway';
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
  const gateway = await startGateway(config, log, standardRoutes).catch((error: Error) => fail(error.message, 1));
  log.info({ url: gateway.url, database: gateway.database.description }, 'tollgate is listening');

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    await gateway.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void shutdown('SIGINT'));
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
}

function fail(message: string, code: number): never {
  process.stderr.write(`tollgate: ${message}\n`);
  process.exit(code);
}

void main();
