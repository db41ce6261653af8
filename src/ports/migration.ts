/**
 * One schema change for a table the application keeps beside the event store (leases, process
 * managers' state). The application declares it; the composition root runs it through the
 * PostgreSQL adapter (adapters/postgres/migrate.ts).
 * `id` sorts: "0001_event_store". Never edit one that has shipped; add another.
 */
export interface Migration {
  readonly id: string;
  readonly sql: string;
}
