/**
 * Limits shared across gateway instances without a database round trip per request.
 *
 * Every live instance (a live row in instance_leases, src/instances/lease.ts) enforces an equal
 * SHARE of each limit: limit / live instances, with a token bucket of that capacity refilling at
 * that rate. The instances' buckets together hold the whole limit and refill at the whole rate,
 * so with requests spread evenly (a load balancer's round robin or least-connections), an account
 * or a key gets what one bucket of the whole limit would give it. Each instance learns the number
 * of live instances at every lease heartbeat (a third of TOLLGATE_INSTANCE_LEASE_S) and resizes
 * its buckets: a join shrinks them at once (a level above the new share is cut to it), a departure
 * grows them (they then refill faster).
 *
 * Tolerance (what the whole cluster may admit beyond one bucket of the whole limit L):
 *  - per instance that joins, one share burst (L/n: its buckets start full), and until the others
 *    have seen the join (at most one heartbeat) their refill at the old, larger share;
 *  - per instance, at most one request larger than its share (admitted only when that instance's
 *    bucket is full, which then goes into debt; a request larger than L itself is never admitted);
 *  - below the limit, not above: traffic spread unevenly (pinned connections) sees only the
 *    share of the instances it reaches, and after an instance dies its share is unused until its
 *    lease lapses.
 * See clusterAdmissionBound for the bound as a formula; the integration test
 * (test/faults/load-balancer.test.ts) checks it with three instances behind HAProxy.
 */

/** The part of `limit` one of `liveInstances` enforces (at least one instance: this one). */
export function shareOf(limit: number, liveInstances: number): number {
  if (!Number.isFinite(limit) || limit <= 0) throw new RangeError('shareOf: limit must be a positive number');
  const instances = Number.isFinite(liveInstances) && liveInstances >= 1 ? Math.floor(liveInstances) : 1;
  return limit / instances;
}

/**
 * The most a steady cluster of `instances` may admit in total over `elapsedMs` against a
 * per-minute limit `limit`, when every instance started with full buckets: the whole burst (L),
 * the whole refill over the time (L per minute), and one request of at most `largestCost` each
 * instance may take into debt. Counting requests, largestCost is 1.
 */
export function clusterAdmissionBound(limit: number, elapsedMs: number, instances: number, largestCost = 1): number {
  const share = shareOf(limit, instances);
  const debt = largestCost > share ? largestCost * instances : 0;
  return limit + (limit * Math.max(0, elapsedMs)) / 60_000 + debt;
}
