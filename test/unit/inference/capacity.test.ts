import { CapacityTable } from '../../../adapters/inference/capacity';
import type { Lease } from '../../../adapters/inference/capacity';
import type { ModelSpec } from '../../../adapters/inference/models-file';

const model: ModelSpec = {
  id: 'm',
  maxOutputTokens: 10,
  operations: ['chat'],
  upstreams: [
    { baseUrl: 'http://a/v1', capacity: 2 },
    { baseUrl: 'http://b/v1', capacity: 1 },
  ],
};

function acquire(table: CapacityTable): Lease {
  const result = table.tryAcquire('m');
  if (result.kind !== 'acquired') throw new Error(result.kind);
  return result.lease;
}

test('slots go to the least-loaded upstream until every one is full, then at_capacity', () => {
  const table = new CapacityTable([model]);
  const leases = [acquire(table), acquire(table), acquire(table)];
  expect(leases.map((l) => l.slot.index).sort()).toEqual([0, 0, 1]);
  expect(table.inFlight('m')).toEqual([2, 1]);
  expect(table.tryAcquire('m')).toEqual({ kind: 'at_capacity', retryAfterSeconds: 1 });
});

test('releasing frees the slot once, however often it is called', () => {
  const table = new CapacityTable([model]);
  const lease = acquire(table);
  lease.release();
  lease.release();
  expect(table.inFlight('m')).toEqual([0, 0]);
});

test('an upstream that refused connections is picked last during its cooldown', () => {
  const now = 0;
  const wide: ModelSpec = { ...model, upstreams: model.upstreams.map((u) => ({ ...u, capacity: 4 })) };
  const table = new CapacityTable([wide], () => now);
  table.markRefused({ model: wide, upstream: wide.upstreams[0]!, index: 0 });
  // b is preferred even when busier, while it has room.
  const picked = [0, 1, 2, 3].map(() => acquire(table).slot.index);
  expect(picked).toEqual([1, 1, 1, 1]);
  // With b full, a is still tried rather than refusing the request outright.
  expect(acquire(table).slot.index).toBe(0);
  expect(table.inFlight('m')).toEqual([1, 4]);
});

test('after the cooldown, an idle upstream that had refused is preferred again', () => {
  let now = 0;
  const wide: ModelSpec = { ...model, upstreams: model.upstreams.map((u) => ({ ...u, capacity: 4 })) };
  const table = new CapacityTable([wide], () => now);
  table.markRefused({ model: wide, upstream: wide.upstreams[0]!, index: 0 });
  expect(acquire(table).slot.index).toBe(1);
  now = 5_001;
  expect(acquire(table).slot.index).toBe(0);
});

test('moving a lease frees the old slot and takes one elsewhere, or holds nothing', () => {
  const table = new CapacityTable([model]);
  const lease = acquire(table);
  const from = lease.slot.index;
  expect(table.moveLease(lease, new Set([from]))).toBe(true);
  expect(lease.slot.index).not.toBe(from);
  expect(table.inFlight('m').reduce((a, b) => a + b)).toBe(1);
  expect(table.moveLease(lease, new Set([0, 1]))).toBe(false);
  expect(table.inFlight('m')).toEqual([0, 0]);
});
