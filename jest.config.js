/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.ts$': ['@swc/jest', { jsc: { parser: { syntax: 'typescript' }, target: 'es2022' }, module: { type: 'commonjs' } }],
  },
  // One real PostgreSQL for the whole run; each test file makes its own database in it.
  globalSetup: '<rootDir>/test/support/global-setup.mjs',
  globalTeardown: '<rootDir>/test/support/global-teardown.mjs',
  // A safety net for a test or hook that hangs, never a verdict: generous, because a test that
  // starts child processes (gateways, the CLI, PostgreSQL) on two cores shared with the rest of
  // the suite can take tens of seconds only to start them. At 30 s, hooks without their own
  // timeout (a beforeAll starting a gateway) failed on a loaded machine with nothing wrong.
  testTimeout: 90_000,
  maxWorkers: 2,
};
