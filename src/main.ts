import { createServer } from 'node:http';
import express from 'express';
import { ConfigError, loadConfig, type Config } from './config';
import { openDatabase } from './database';
import { createLogger } from './logger';

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
  const database = await openDatabase(config, log).catch((error: Error) => fail(error.message, 1));

  const app = express();
  app.disable('x-powered-by');
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    try {
      await database.pool.query('SELECT 1');
      res.json({ status: 'ready', database: 'ok' });
    } catch {
      res.status(503).json({ status: 'not ready', database: 'unreachable' });
    }
  });

  const server = createServer(app);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.PORT, config.HOST, resolve);
  }).catch((error: Error) => fail(`cannot listen on ${config.HOST}:${config.PORT}: ${error.message}`, 1));
  log.info({ url: `http://${config.HOST}:${config.PORT}`, database: database.description }, 'tollgate is listening');

  const shutdown = async (signal: string) => {
    log.info({ signal }, 'shutting down');
    server.close();
    await database.close();
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
