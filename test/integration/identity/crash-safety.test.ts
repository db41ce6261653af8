import pino from 'pino';
import type { Pool } from 'pg';
import { createPostgresEventStore } from '../../../adapters/eventstore/postgres';
import { migrate } from '../../../adapters/postgres/migrate';
import { migrations } from '../../../adapters/postgres/migrations';
import { createPool } from '../../../adapters/postgres/pool';
import { DEFAULT_ACCOUNT_POLICY } from '../../../domain/account';
import { domainEventCodec, type DomainEvent } from '../../../domain/events';
import { userStreamId } from '../../../domain/user';
import { replayProjections } from '../../../src/finance/replay';
import { Identity, type IdentityOptions } from '../../../src/identity/identity';
import { ABANDON_REGISTRATION_AFTER_MS } from '../../../src/identity/reconciler';
import { createLedger, type Ledger } from '../../../src/ledger';
import { MailOutbox } from '../../../src/mail/outbox';
import type { EventStore } from '../../../src/ports/event-store';
import type { PersonalDataVault } from '../../../src/ports/personal-data-vault';
import { membershipsProjection } from '../../../src/read-models/memberships';
import { createTestDatabase } from '../../support/database';
import { DashboardClient } from '../../support/dashboard-client';
import { startTestGateway } from '../../support/gateway';
import { testVault } from '../../support/master-key';
import { until } from '../../support/wait';

/**
 * Identity's multi-step commands stopped at every point where a crash falls between two writes
 * (the fault seam throws there, and nothing after it runs, as when the process dies), then a new
 * Identity (a restarted process) reconciles. Each ends either whole or as if it never happened.
 */

const PASSWORD = 'violet kettle drums at noon';
const MODELS = [{ id: 'm', upstreams: [{ baseUrl: 'http://127.0.0.1:9/v1', capacity: 1 }], maxOutputTokens: 10, operations: ['chat' as const] }];
const OPTIONS: IdentityOptions = {
  bcryptCost: 4,
  sessionIdleMs: 3_600_000,
  sessionMaxMs: 86_400_000,
  signupPromo: 0n,
  signupPromoDays: 30,
  failuresPerEmail: 100,
  failuresPerAddress: 100,
  failureWindowMs: 60_000,
};

class SimulatedCrash extends Error {
  override readonly name = 'SimulatedCrash';
}

describe('identity commands survive a crash between any two of their writes', () => {
  let databaseUrl: string;
  let pool: Pool;
  let store: EventStore<DomainEvent>;
  let ledger: Ledger;
  let vault: PersonalDataVault;
  let mail: MailOutbox;
  const log = pino({ level: 'silent' });

  /** An Identity as a fresh process has it; `crashAt` makes it die at that step. */
  const identity = (crashAt?: string) =>
    new Identity(pool, store, ledger, vault, mail, log, {
      ...OPTIONS,
      fault: (step) => {
        if (step === crashAt) throw new SimulatedCrash(step);
      },
    });

  beforeAll(async () => {
    databaseUrl = await createTestDatabase('idcrash');
    pool = createPool({ connectionString: databaseUrl, max: 6, connectTimeoutMs: 5_000 });
    store = createPostgresEventStore<DomainEvent>(pool, domainEventCodec, { notify: false });
    await migrate(pool, migrations);
    ledger = createLedger(store, DEFAULT_ACCOUNT_POLICY);
    vault = await testVault(pool);
    mail = new MailOutbox(pool, store, vault);
  });

  afterAll(async () => {
    await store?.close();
    await pool?.end();
  });

  const userIdOf = async (email: string) => {
    const lookup = await identity().emailLookup(email);
    return (await pool.query<{ user_id: string }>('SELECT user_id FROM user_credentials WHERE email_lookup = $1', [lookup])).rows[0]?.user_id;
  };
  const signIn = (email: string, password = PASSWORD) => identity().signIn({ email, password, clientAddress: '192.0.2.1', userAgent: null });
  const countEvents = async () => Number((await pool.query<{ n: string }>('SELECT count(*) AS n FROM events')).rows[0]!.n);
  const eventTypes = async (streamId: string) => (await store.readStream(streamId)).events.map((e) => e.event.type);
  const verificationMails = async (userId: string) =>
    Number(
      (
        await pool.query<{ n: string }>(
          `SELECT count(*) AS n FROM events WHERE type = 'EmailRequested' AND data->>'subject' = $1 AND data->>'kind' = 'email_verification'`,
          [userId],
        )
      ).rows[0]!.n,
    );
  const ownAccount = async (userId: string) =>
    (await pool.query<{ account_id: string }>(`SELECT account_id FROM memberships WHERE user_id = $1 AND role = 'owner'`, [userId])).rows[0]?.account_id;

  it.each(['sign-up:registered', 'sign-up:account-opened', 'sign-up:member-added'])(
    'a sign-up that dies at %s is finished on restart: one account, one owner membership, one verification email, then sign-in works',
    async (step) => {
      const email = `crash-${step.replace(/\W/g, '-')}@example.test`;
      await expect(identity(step).signUp({ email, name: 'Ada', password: PASSWORD, organisation: 'Engines' })).rejects.toThrow(SimulatedCrash);
      const userId = (await userIdOf(email))!;
      expect(await eventTypes(userStreamId(userId))).toEqual(['UserRegistered']);
      // Unfinished: the address is held, but nobody signs in with it yet.
      expect((await signIn(email)).ok).toBe(false);

      const done = await identity().reconcile({ abandonAfterMs: ABANDON_REGISTRATION_AFTER_MS });
      expect(done).toMatchObject({ completed: 1, abandoned: 0 });
      const registered = (await store.readStream(userStreamId(userId))).events[0]!.event;
      const accountId = registered.type === 'UserRegistered' ? registered.data.accountId! : '';
      expect(await eventTypes(`account-${accountId}`)).toEqual(['AccountOpened']);
      expect(await eventTypes(`account-members-${accountId}`)).toEqual(['MemberAdded']);
      expect(await ownAccount(userId)).toBe(accountId);
      expect(await verificationMails(userId)).toBe(1);
      expect((await signIn(email)).ok).toBe(true);

      // Again: nothing is done twice.
      const before = await countEvents();
      await identity().reconcile({ abandonAfterMs: ABANDON_REGISTRATION_AFTER_MS });
      await identity().completeRegistration(userId);
      expect(await countEvents()).toBe(before);
    },
  );

  it('a sign-up that dies between claiming the address and UserRegistered is undone: the address is free again and the late event cannot land', async () => {
    const email = 'half-claimed@example.test';
    await expect(identity('sign-up:claimed').signUp({ email, name: 'Ada', password: PASSWORD, organisation: 'Engines' })).rejects.toThrow(SimulatedCrash);
    const userId = (await userIdOf(email))!;
    expect(userId).toBeDefined();
    expect((await signIn(email)).ok).toBe(false);

    // Young: maybe a request still between its two writes, so it is left alone.
    expect(await identity().reconcile({ abandonAfterMs: ABANDON_REGISTRATION_AFTER_MS })).toMatchObject({ completed: 0, abandoned: 0 });
    expect(await userIdOf(email)).toBe(userId);
    // Old enough: fenced and freed.
    expect(await identity().reconcile({ abandonAfterMs: 0 })).toMatchObject({ abandoned: 1 });
    expect(await userIdOf(email)).toBeUndefined();
    expect(await eventTypes(userStreamId(userId))).toEqual(['UserRegistrationAbandoned']);
    await expect(
      store.appendToStream(
        userStreamId(userId),
        [
          {
            id: '3f1d2c4b-0000-4000-8000-000000000001',
            event: { type: 'UserEmailVerified', data: { userId }, metadata: (await store.readStream(userStreamId(userId))).events[0]!.event.metadata },
          },
        ],
        { expectedVersion: 'no_stream' },
      ),
    ).rejects.toThrow(/version conflict/);

    // The address signs up again, whole.
    expect((await identity().signUp({ email, name: 'Ada', password: PASSWORD, organisation: 'Engines' })).ok).toBe(true);
    const again = (await userIdOf(email))!;
    expect(again).not.toBe(userId);
    expect(await ownAccount(again)).toBeDefined();
    expect((await signIn(email)).ok).toBe(true);
  });

  it('a new sign-up with an address an abandoned half sign-up still holds frees it and goes through, without waiting for the worker', async () => {
    const email = 'held-address@example.test';
    await expect(identity('sign-up:claimed').signUp({ email, name: 'Ada', password: PASSWORD, organisation: 'Engines' })).rejects.toThrow(SimulatedCrash);
    const held = (await userIdOf(email))!;
    // Still young: maybe in flight, so a second sign-up does not take it (the same answer, no account).
    expect((await identity().signUp({ email, name: 'Ada', password: PASSWORD, organisation: 'Engines' })).ok).toBe(true);
    expect(await userIdOf(email)).toBe(held);
    // Older than any request lives (the row's age moved back, as the clock would).
    await pool.query(`UPDATE user_credentials SET created_at = created_at - interval '1 hour' WHERE user_id = $1`, [held]);
    expect((await identity().signUp({ email, name: 'Ada', password: PASSWORD, organisation: 'Engines' })).ok).toBe(true);
    const fresh = (await userIdOf(email))!;
    expect(fresh).not.toBe(held);
    expect(await eventTypes(userStreamId(held))).toEqual(['UserRegistrationAbandoned']);
    expect(await ownAccount(fresh)).toBeDefined();
    expect(await verificationMails(fresh)).toBe(1);
    expect((await signIn(email)).ok).toBe(true);
  });

  /** An account owned by a fresh user, and an invitation link for `invitee` with `role`. */
  async function invitation(owner: string, invitee: string, role: 'developer' | 'owner' = 'developer') {
    expect((await identity().signUp({ email: owner, name: 'Owner', password: PASSWORD, organisation: 'Org' })).ok).toBe(true);
    const ownerId = (await userIdOf(owner))!;
    const accountId = (await ownAccount(ownerId))!;
    const invited = await identity().invite({ accountId, actorId: ownerId, actorRole: 'owner', email: invitee, role });
    if (!invited.ok) throw new Error(invited.error.message);
    const { rows } = await pool.query<{ email_id: string }>(
      `SELECT data->>'emailId' AS email_id FROM events WHERE type = 'EmailRequested' AND data->>'kind' = 'invitation' AND data->>'subject' = $1`,
      [accountId],
    );
    return { ownerId, accountId, invitationId: invited.value.id, token: await mail.linkToken(rows.at(-1)!.email_id) };
  }

  it('an acceptance that dies after claiming the invitation gets its membership on restart, and the link stays single-use', async () => {
    const { accountId, invitationId, token } = await invitation('inv-owner-1@example.test', 'newcomer@example.test');
    await expect(identity('invitation:claimed').acceptInvitation({ token, name: 'New', password: PASSWORD })).rejects.toThrow(SimulatedCrash);
    const userId = (await userIdOf('newcomer@example.test'))!;
    expect((await pool.query('SELECT 1 FROM memberships WHERE account_id = $1 AND user_id = $2', [accountId, userId])).rowCount).toBe(0);

    expect(await identity().reconcile({ abandonAfterMs: ABANDON_REGISTRATION_AFTER_MS })).toMatchObject({ invitations: 1 });
    const member = await pool.query<{ role: string }>('SELECT role FROM memberships WHERE account_id = $1 AND user_id = $2', [accountId, userId]);
    expect(member.rows).toEqual([{ role: 'developer' }]);
    expect(
      (await pool.query('SELECT completed_at FROM account_invitations WHERE invitation_id = $1 AND completed_at IS NOT NULL', [invitationId])).rowCount,
    ).toBe(1);
    expect((await signIn('newcomer@example.test')).ok).toBe(true);
    const second = await identity().acceptInvitation({ token, name: 'New', password: PASSWORD });
    expect(second.ok ? null : second.error.code).toBe('invalid_token');
    expect((await eventTypes(`account-members-${accountId}`)).filter((t) => t === 'MemberAdded')).toHaveLength(2);
  });

  it('an acceptance that dies before its claim leaves the invitation unused: the same link then works once', async () => {
    const { accountId, invitationId, token } = await invitation('inv-owner-2@example.test', 'second@example.test');
    await expect(identity('invitation:user-ready').acceptInvitation({ token, name: 'Second', password: PASSWORD })).rejects.toThrow(SimulatedCrash);
    expect((await pool.query('SELECT 1 FROM account_invitations WHERE invitation_id = $1 AND used_at IS NULL', [invitationId])).rowCount).toBe(1);
    const again = await identity().acceptInvitation({ token });
    expect(again.ok && again.value).toMatchObject({ accountId, role: 'developer', newUser: false });
    const third = await identity().acceptInvitation({ token });
    expect(third.ok ? null : third.error.code).toBe('invalid_token');
  });

  it.each(['delete:decided', 'delete:member-removed', 'delete:recorded'])(
    'a self-deletion that dies at %s is finished on restart; meanwhile the leaver counts as no owner and cannot sign in',
    async (step) => {
      const tag = step.replace(/\W/g, '-');
      const { ownerId, accountId } = await invitation(`del-owner-${tag}@example.test`, `del-leaver-${tag}@example.test`, 'owner');
      const leaver = `del-leaver-${tag}@example.test`;
      const inv = await pool.query<{ token_hash: string }>('SELECT 1 FROM account_invitations WHERE account_id = $1', [accountId]);
      expect(inv.rowCount).toBe(1);
      // Accept through a fresh link token: the one from invitation().
      const { rows } = await pool.query<{ email_id: string }>(
        `SELECT data->>'emailId' AS email_id FROM events WHERE type = 'EmailRequested' AND data->>'kind' = 'invitation' AND data->>'subject' = $1`,
        [accountId],
      );
      expect((await identity().acceptInvitation({ token: await mail.linkToken(rows[0]!.email_id), name: 'Leaver', password: PASSWORD })).ok).toBe(true);
      const leaverId = (await userIdOf(leaver))!;

      await expect(identity(step).deleteUser(leaverId, PASSWORD)).rejects.toThrow(SimulatedCrash);
      expect((await signIn(leaver)).ok).toBe(false);
      // The other owner cannot leave now: the leaver's ownership is already on its way out.
      const ownerGoes = await identity().deleteUser(ownerId, PASSWORD);
      expect(ownerGoes.ok ? null : ownerGoes.error.code).toBe('last_owner');

      expect(await identity().reconcile({ abandonAfterMs: ABANDON_REGISTRATION_AFTER_MS })).toMatchObject({ deletions: 1 });
      expect(await userIdOf(leaver)).toBeUndefined();
      expect((await pool.query('SELECT 1 FROM memberships WHERE user_id = $1', [leaverId])).rowCount).toBe(0);
      expect(await eventTypes(userStreamId(leaverId))).toEqual(['UserRegistered', 'UserEmailVerified', 'UserDeleted']);
      expect((await eventTypes(`account-members-${accountId}`)).filter((t) => t === 'MemberRemoved')).toHaveLength(1);
      expect((await pool.query('SELECT 1 FROM user_sessions WHERE user_id = $1', [leaverId])).rowCount).toBe(0);
      expect(await ownAccount(ownerId)).toBe(accountId);
      const before = await countEvents();
      await identity().reconcile({ abandonAfterMs: ABANDON_REGISTRATION_AFTER_MS });
      expect(await countEvents()).toBe(before);
    },
  );

  it('the memberships table is a projection: reset and replayed from the log, it has the same rows', async () => {
    const snapshot = async () =>
      (
        await pool.query<{ row: string }>(
          `SELECT account_id || '|' || user_id || '|' || role || '|' || since::text AS row FROM memberships ORDER BY account_id, user_id`,
        )
      ).rows.map((r) => r.row);
    const live = await snapshot();
    expect(live.length).toBeGreaterThan(5);
    const client = await pool.connect();
    try {
      await membershipsProjection.reset(client);
    } finally {
      client.release();
    }
    expect(await snapshot()).toEqual([]);
    await replayProjections(pool, store, [membershipsProjection]);
    expect(await snapshot()).toEqual(live);
  });

  it('a gateway started after a sign-up died finishes it at start: the person signs in over HTTP', async () => {
    const email = 'restart@example.test';
    await expect(identity('sign-up:registered').signUp({ email, name: 'Ada', password: PASSWORD, organisation: 'Engines' })).rejects.toThrow(SimulatedCrash);
    const gw = await startTestGateway({ models: MODELS, databaseUrl, env: { TOLLGATE_BCRYPT_COST: '4' } });
    try {
      const userId = (await userIdOf(email))!;
      // Its workers finish the sign-up as they start (a failed sign-in meanwhile would only count toward the limit).
      await until(
        async () =>
          (await pool.query('SELECT 1 FROM user_credentials WHERE user_id = $1 AND registered_at IS NOT NULL', [userId])).rowCount ? true : undefined,
        { what: 'the restarted gateway to finish the sign-up' },
      );
      const client = new DashboardClient(gw.url);
      expect((await client.post('/dashboard/api/sign-in', { email, password: PASSWORD })).status).toBe(200);
      expect((await client.get('/dashboard/api/session')).body).toMatchObject({ signed_in: true, member_role: 'owner' });
    } finally {
      await gw.stop();
    }
  });
});
