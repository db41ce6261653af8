import fc from 'fast-check';
import { PersistentMap } from '../../../../domain/collections/persistent-map';

describe('PersistentMap', () => {
  test('set and delete leave the map they came from unchanged', () => {
    const a = PersistentMap.empty<string, number>().set('x', 1).set('y', 2);
    const b = a.set('z', 3).delete('x');
    expect([...a]).toEqual([
      ['x', 1],
      ['y', 2],
    ]);
    expect([...b]).toEqual([
      ['y', 2],
      ['z', 3],
    ]);
    expect(a.size).toBe(2);
    expect(b.get('x')).toBeUndefined();
    expect(b.has('z')).toBe(true);
    expect(b.delete('absent')).toBe(b);
  });

  test('behaves as a Map under any sequence of sets and deletes: same entries, same (insertion) order', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('set' as const), key: fc.integer({ min: 0, max: 30 }), value: fc.integer() }),
      fc.record({ kind: fc.constant('delete' as const), key: fc.integer({ min: 0, max: 30 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
        const model = new Map<number, number>();
        let map = PersistentMap.empty<number, number>();
        for (const o of ops) {
          if (o.kind === 'set') {
            model.set(o.key, o.value);
            map = map.set(o.key, o.value);
          } else {
            model.delete(o.key);
            map = map.delete(o.key);
          }
        }
        expect([...map]).toEqual([...model]);
        expect([...map.keys()]).toEqual([...model.keys()]);
        expect([...map.values()]).toEqual([...model.values()]);
        expect(map.size).toBe(model.size);
        const seen: [number, number][] = [];
        map.forEach((value, key, self) => {
          expect(self).toBe(map);
          seen.push([key, value]);
        });
        expect(seen).toEqual([...model]);
      }),
      { seed: 17, numRuns: 300 },
    );
  });

  test('from() copies a Map once and returns a PersistentMap as it is', () => {
    const plain = new Map([['k', 1]]);
    const persistent = PersistentMap.from(plain);
    plain.set('k', 2);
    expect(persistent.get('k')).toBe(1);
    expect(PersistentMap.from(persistent)).toBe(persistent);
  });

  test('two maps with the same entries are equal whatever their history (jest compares entries)', () => {
    const direct = PersistentMap.empty<string, number>().set('a', 1).set('b', 2);
    const roundabout = PersistentMap.empty<string, number>().set('a', 1).set('c', 3).set('b', 2).delete('c');
    expect(roundabout).toEqual(direct);
    expect(roundabout).not.toEqual(direct.set('b', 5));
  });
});
