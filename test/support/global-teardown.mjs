export default async function globalTeardown() {
  const pg = globalThis.__TOLLGATE_PG__;
  if (pg) await pg.stop();
}
