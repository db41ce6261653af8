import { Pool } from 'pg';
import pino from 'pino';
import { migrate } from '../../../adapters/postgres/migrate';
import { migrations } from '../../../adapters/postgres/migrations';
import { InstanceLease } from '../../../src/instances/lease';
import { createTestDatabase } from '../../support/database';
import { until } from '../../support/wait';

/**
 * The workers role on a real database, between instances in this process (the fault suite does
 * it with real processes and SIGKILL): one holder at a time, a clean stop hands it over, and a
 * holder whose lease lapsed loses it and stops its workers at its next heartbeat.
 */
describe('instance leases and the workers role', () => {
  let pool: Pool;
  let databaseUrl: string;
  const started: InstanceLease[] = [];
  const log = pino({ level: 'silent' });

  beforeAll(async () => {
    databaseUrl = await createTestDatabase('leases');
    pool = new Pool({ connectionString: databaseUrl, max: 6 });
    await migrate(pool, migrations);
  });
  afterAll(async () => {
    for (const lease of started) await lease.stop();
    await pool.end();
  });

  function instance(events: string[], name: string, own: Pool = pool): InstanceLease {
    const lease = new InstanceLease(own, log, {
      leaseMs: 1_500,
      startWorkers: () => {
        events.push(`${name} started`);
        return [{ stop: async () => void events.push(`${name} stopped`) }];
      },
    });
    started.push(lease);
    return lease;
  }

  const holder = async () => (await pool.query<{ instance_id: string }>(`SELECT instance_id FROM instance_roles WHERE role = 'workers'`)).rows[0]?.instance_id;

  test('one holder; a clean stop hands the workers over; a lapsed holder loses them and stops its own', async () => {
    const events: string[] = [];
    const a = instance(events, 'a');
    // b talks to the database through a pool of one connection, so the test can stall it.
    const bPool = new Pool({ connectionString: databaseUrl, max: 1 });
    const b = instance(events, 'b', bPool);
    await a.start();
    await b.start();
    expect(await holder()).toBe(a.id);
    expect([a.runsWorkers, b.runsWorkers]).toEqual([true, false]);
    expect(events).toEqual(['a started']);

    // Clean stop: role released and lease ended at once, b takes over at its next heartbeat.
    await a.stop();
    await until(async () => ((await holder()) === b.id ? true : undefined), { what: 'b to take the workers' });
    expect(events).toEqual(['a started', 'a stopped', 'b started']);
    const { rows } = await pool.query<{ live: boolean }>('SELECT lapses_at > now() AS live FROM instance_leases WHERE instance_id = $1', [a.id]);
    expect(rows).toEqual([{ live: false }]);

    // b stalls past its lease (its heartbeats wait for the connection the test holds): c claims
    // the role; once b can reach the database again, it sees it is no longer the holder and
    // stops its workers.
    const stall = await bPool.connect();
    const c = instance(events, 'c');
    await pool.query(`UPDATE instance_leases SET lapses_at = now() - interval '1 second' WHERE instance_id = $1`, [b.id]);
    await c.start();
    expect(await holder()).toBe(c.id);
    expect(b.runsWorkers).toBe(true);
    stall.release();
    await until(async () => (b.runsWorkers ? undefined : true), { what: 'b to stop its workers' });
    expect(events).toEqual(['a started', 'a stopped', 'b started', 'c started', 'b stopped']);
    expect(c.runsWorkers).toBe(true);
    await b.stop();
    await bPool.end();
  });

  test('each instance counts the live instances at its heartbeat (what the shared rate limits divide by): joins and departures', async () => {
    for (const lease of started.splice(0)) await lease.stop(); // the previous test's instances are gone
    const events: string[] = [];
    const a = instance(events, 'a');
    await a.start();
    expect(a.liveInstances).toBe(1);
    const b = instance(events, 'b');
    await b.start();
    expect(b.liveInstances).toBe(2); // b counts a and itself at once
    await until(async () => (a.liveInstances === 2 ? true : undefined), { what: 'a to see b join' });
    const c = instance(events, 'c');
    await c.start();
    expect(c.liveInstances).toBe(3);
    await until(async () => (a.liveInstances === 3 && b.liveInstances === 3 ? true : undefined), { what: 'a and b to see c join' });
    // c stops cleanly (its lease ends at once); b's lapses as a killed one's would
    await c.stop();
    await until(async () => (a.liveInstances === 2 ? true : undefined), { what: 'a to see c leave' });
    await pool.query(`UPDATE instance_leases SET lapses_at = now() - interval '1 second' WHERE instance_id = $1`, [b.id]);
    await b.stop();
    await until(async () => (a.liveInstances === 1 ? true : undefined), { what: 'a to see b gone' });
    await a.stop();
  });
});
