import { PROJECTION_NAMES } from '../../../src/cli/finance';
import { projections } from '../../../src/read-models/registry';

test("replay --projection offers exactly the registry's projections (the CLI lists them without loading them)", () => {
  expect([...PROJECTION_NAMES]).toEqual(projections.map((p) => p.name));
});
