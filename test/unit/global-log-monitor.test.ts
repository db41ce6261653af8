import pino from 'pino';
import { GlobalLogMonitor } from '../../src/global-log-monitor';
import type { GlobalLogLag } from '../../src/ports/event-store';

/** The monitor's decisions on given measurements (the measuring itself is tested on PostgreSQL). */

const blocker = {
  pid: 4242,
  database: 'reports',
  applicationName: 'psql',
  state: 'idle in transaction',
  transactionAgeSeconds: 75.04,
  preparedTransaction: null,
};
const clear: GlobalLogLag = { hiddenEvents: 0, seconds: 0, blocker: null };
const stalled = (seconds: number): GlobalLogLag => ({ hiddenEvents: 12, seconds, blocker });

function monitorOver(measurements: (GlobalLogLag | Error)[]) {
  const lines: Record<string, unknown>[] = [];
  const gauges: { seconds: number; hiddenEvents: number; blockerAgeSeconds: number }[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  const monitor = new GlobalLogMonitor(
    async () => {
      const next = measurements.shift()!;
      if (next instanceof Error) throw next;
      return next;
    },
    { set: (lag) => void gauges.push(lag) },
    log,
    { stalledAfterS: 30, warnEveryMs: 60_000 },
  );
  return { monitor, lines, gauges };
}

test('past the threshold: stalled, one warning naming the blocker (not repeated within warnEveryMs), then one all-clear', async () => {
  const { monitor, lines, gauges } = monitorOver([clear, stalled(5), stalled(31), stalled(32), clear]);
  await monitor.check();
  await monitor.check();
  expect(monitor.health()).toEqual({ stalled: false, lagSeconds: 5, hiddenEvents: 12 });
  expect(lines).toEqual([]);
  await monitor.check();
  await monitor.check();
  expect(monitor.health()).toEqual({ stalled: true, lagSeconds: 32, hiddenEvents: 12 });
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatchObject({
    level: 40,
    lagSeconds: 31,
    hiddenEvents: 12,
    blocker: { pid: 4242, database: 'reports', applicationName: 'psql', state: 'idle in transaction', transactionAgeSeconds: 75 },
  });
  expect(lines[0]!['blocker']).not.toHaveProperty('preparedTransaction');
  await monitor.check();
  expect(monitor.health().stalled).toBe(false);
  expect(lines).toHaveLength(2);
  expect(lines[1]).toMatchObject({ level: 30, msg: 'global log caught up' });
  expect(gauges.map((g) => g.seconds)).toEqual([0, 5, 31, 32, 0]);
  expect(gauges.map((g) => g.blockerAgeSeconds)).toEqual([0, 75.04, 75.04, 75.04, 0]);
});

test('a failed measurement changes nothing: the lag is unknown, not zero', async () => {
  const { monitor, gauges } = monitorOver([stalled(40), new Error('connection terminated')]);
  await monitor.check();
  await monitor.check();
  expect(monitor.health()).toEqual({ stalled: true, lagSeconds: 40, hiddenEvents: 12 });
  expect(gauges).toHaveLength(1);
});
