import { startTestGateway } from '../../support/gateway';
import { startFaultUpstream } from '../../support/fault-upstream';
import { Client } from 'pg';
import { accountStreamId } from '../../../domain/account';
import { addModel, issueKey, openAccount, openAiClient } from '../../support/e2e-setup';

/**
 * Shutdown drains first (src/gateway.ts close()): it stops accepting at once, waits for open
 * requests up to TOLLGATE_DRAIN_TIMEOUT_S, then cuts what is still open, so a stream whose
 * upstream went silent cannot hold shutdown up; its reservation is still ended.
 */
test('close() stops accepting at once, cuts a stream still open after the drain timeout, says so, and ends its reservation', async () => {
  const fault = await startFaultUpstream();
  const models = [{ id: 'stall-mid-stream', upstreams: [{ baseUrl: fault.baseUrl, capacity: 4 }], maxOutputTokens: 256, operations: ['chat' as const] }];
  const tg = await startTestGateway({ models, env: { TOLLGATE_DRAIN_TIMEOUT_S: '1', TOLLGATE_UPSTREAM_IDLE_TIMEOUT_S: '600' } });
  try {
    await addModel(tg.gateway.ledger, 'stall-mid-stream', { chat: { input: '1', output: '2' } }, 256);
    const accountId = await openAccount(tg.gateway.ledger, { topUpUsd: '10' });
    const { secret } = await issueKey(tg.gateway.keys, accountId);
    const stream = await openAiClient(tg.url, secret).chat.completions.create({
      model: 'stall-mid-stream',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
    });
    const chunks = stream[Symbol.asyncIterator]();
    await chunks.next(); // in flight; the upstream then goes silent
    const reading = (async () => {
      try {
        for (let next = await chunks.next(); !next.done; next = await chunks.next());
        return 'ended';
      } catch {
        return 'cut';
      }
    })();

    const closing = tg.stop();
    // Not accepting any more, while the stalled stream keeps the drain going.
    await expect(fetch(`${tg.url}/healthz`)).rejects.toThrow();
    await closing;
    expect(await reading).toBe('cut');
    expect(tg.logLines.some((line) => line.includes('drain timeout reached: cutting the connections still open'))).toBe(true);
    // The cut stream's reservation ended (settled for what was delivered, or released) before the database went.
    const client = new Client({ connectionString: tg.databaseUrl });
    await client.connect();
    const { rows } = await client
      .query<{ type: string }>(`SELECT type FROM events WHERE stream_id = $1 AND type LIKE 'Reservation%' ORDER BY stream_revision`, [
        accountStreamId(accountId),
      ])
      .finally(() => client.end());
    expect(rows.length).toBe(2);
    expect(rows[0]!.type).toBe('ReservationPlaced');
    expect(['ReservationSettled', 'ReservationReleased']).toContain(rows[1]!.type);
  } finally {
    await fault.stop();
  }
});
