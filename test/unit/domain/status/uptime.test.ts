import { MINUTE_MS, requestCountsAsFailure, uptimeOf, type Observation } from '../../../../domain/status';

const T0 = Date.parse('2030-01-01T00:00:00Z');
const at = (minute: number) => T0 + minute * MINUTE_MS;
const obs = (minute: number, total: number, failed: number, endpoint = 'chat', model = 'm'): Observation => ({
  model,
  endpoint,
  minuteMs: at(minute),
  total,
  failed,
});

describe('uptime', () => {
  test('upstream failures and 5xx count against; client errors do not', () => {
    expect(requestCountsAsFailure('upstream_error_no_tokens', null)).toBe(true);
    expect(requestCountsAsFailure('upstream_error_no_tokens', 502)).toBe(true);
    expect(requestCountsAsFailure('upstream_error_no_tokens', 400)).toBe(false);
    expect(requestCountsAsFailure('completed', 200)).toBe(false);
    expect(requestCountsAsFailure('gateway_error', null)).toBe(true);
  });

  test('a minute is down when half or more of any endpoint failed; by hand over 100 minutes', () => {
    const observations = [
      obs(0, 4, 2), // down (half)
      obs(1, 4, 1), // up
      obs(2, 1, 1, 'probe'), // down (probe failed)
      obs(2, 3, 0), // same minute, still down
      obs(3, 0, 0), // nothing: up
      obs(5, 2, 2, 'chat', 'other'), // another model
      obs(150, 1, 1), // outside the period
    ];
    const u = uptimeOf(observations, 'm', at(0), at(100), []);
    expect(u).toEqual({ uptime: 1 - 2 / 100, downMinutes: 2, countedMinutes: 100, maintenanceMinutes: 0 });
  });

  test('maintenance minutes are left out of both counts', () => {
    const u = uptimeOf([obs(10, 1, 1), obs(20, 1, 1)], 'm', at(0), at(100), [{ startMs: at(5), endMs: at(15) }]);
    expect(u).toEqual({ uptime: 1 - 1 / 90, downMinutes: 1, countedMinutes: 90, maintenanceMinutes: 10 });
  });
});
