import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { accountStreamId, type AccountError, type RequestMetadata } from '../../domain/account';
import { isModelAllowed } from '../../domain/api-key';
import { chargeFor, type RequestOutcome } from '../../domain/charge-policy';
import type { CommandMetadata } from '../../domain/events/metadata';
import type { MicroUsd } from '../../domain/money';
import { PRICE_BOOK_STREAM_ID, priceInForce, type Operation as AnyOperation, type PriceBookState, type PriceInForce } from '../../domain/price-book';
import type { InferenceAdapter, Lease, ModelSpec } from '../../adapters/inference';
import type { VerifiedKey } from '../api-keys';
import type { Ledger } from '../ledger';
import type { SettlementTracker } from '../settlements';

/**
 * What every priced request goes through, whatever it is priced in (tokens: serve-request.ts;
 * audio seconds and characters: serve-audio.ts): the gates before anything is counted (the key's
 * model allowlist, the price in force, a served model), the upstream slot and the reservation's
 * placement (with the key's spend limit, and the release of a placement whose outcome was lost),
 * the dispatch window (the client leaving, the maximum request duration, a failure inside the
 * gateway) and the reservation's ending by the charge policy, with its retries and the request log.
 */
export interface ReservationDeps {
  readonly ledger: Ledger;
  readonly inference: Pick<InferenceAdapter, 'model' | 'tryAcquire'>;
  readonly metrics: {
    readonly reservationsOpen: { inc(): void; dec(): void };
    observeUpstreamLatency(model: string, latencyMs: number): void;
  };
  readonly settlements: SettlementTracker;
  readonly logger: Logger;
  /** this gateway instance (src/instances/lease.ts): recorded on each reservation it places */
  readonly instanceId?: string;
  /**
   * The gateway ends a request at this age and settles what was produced, before its
   * reservation's deadline lets the expiry process return the hold. Unset: no limit here.
   */
  readonly maxRequestDurationMs?: number;
  /** wall clock for the price and retirement in force; the real clock when absent (tests inject one) */
  readonly now?: () => Date;
}

/** Turned away at the gates, before anything is counted or reserved. */
export type ModelRefusal =
  | { readonly kind: 'model_not_found'; readonly model: string }
  /** the key's model allowlist does not name it */
  | { readonly kind: 'model_not_allowed'; readonly model: string }
  /** the model was retired (at `retiredAt`, when known): named so the client knows it is gone for good */
  | { readonly kind: 'model_retired'; readonly model: string; readonly retiredAt: string | undefined }
  | { readonly kind: 'upstream_unavailable' };

export interface ModelInForce {
  readonly price: PriceInForce;
  readonly book: PriceBookState;
  readonly spec: ModelSpec;
}

/** The gates: the key may use the model, it has a price in force for the operation, and an upstream serves it. */
export async function modelInForce(
  deps: Pick<ReservationDeps, 'ledger' | 'inference' | 'now'>,
  key: VerifiedKey,
  model: string,
  operation: AnyOperation,
): Promise<{ readonly ok: true; readonly value: ModelInForce } | { readonly ok: false; readonly refusal: ModelRefusal }> {
  const now = (deps.now?.() ?? new Date()).toISOString();
  if (!isModelAllowed(key.limits, model)) return { ok: false, refusal: { kind: 'model_not_allowed', model } };
  const { state: book } = await deps.ledger.priceBook.load(PRICE_BOOK_STREAM_ID);
  const price = priceInForce(book, model, operation, now);
  if (!price.ok) {
    if (price.error.error === 'model_retired') return { ok: false, refusal: { kind: 'model_retired', model, retiredAt: price.error.retiredAt } };
    return { ok: false, refusal: { kind: 'model_not_found', model } };
  }
  const spec = deps.inference.model(model);
  if (!spec || !spec.operations.includes(operation)) return { ok: false, refusal: { kind: 'upstream_unavailable' } };
  return { ok: true, value: { price: price.value, book, spec } };
}

/** Turned away at placement: no slot, or the account cannot hold the amount. Nothing is held. */
export type PlacementRefusal =
  | { readonly kind: 'upstream_unavailable' }
  | { readonly kind: 'at_capacity'; readonly retryAfterSeconds: number }
  | { readonly kind: 'reservation_refused'; readonly error: AccountError };

/** A placed reservation and the upstream slot it goes with. */
export interface Placed {
  readonly lease: Lease;
  readonly key: VerifiedKey;
  readonly reservationId: string;
  /** the account's stream */
  readonly stream: string;
  readonly metadata: CommandMetadata;
  readonly price: PriceInForce;
  /** the reservation's deadline (epoch ms) */
  readonly expiresAt: number;
}

/**
 * Work started on the reservation's in-memory decision while its commit is in flight (issue 17):
 * the request dispatched to the upstream, its output held back from the client.
 */
export interface Speculation<R> {
  /** the work, started on the placement's slot; it gives the slot back when it ends */
  readonly result: Promise<R>;
  /** the reservation is durable: the work's output may reach the client */
  open(): void;
  /** stops the work at once (nothing it held back is ever sent); resolves once it has ended */
  cancel(): Promise<void>;
}

/** How a placement may start the dispatch before its commit is durable. */
export interface Speculative<R> {
  /** starts the work on the slot; called at most once, when the placement is decided in memory */
  start(lease: Lease): Speculation<R>;
  /** the request, for the log entry of a reservation released when no slot is left to dispatch on */
  readonly logged: LoggedRequest;
}

/**
 * Takes an upstream slot and places the reservation (with the key's spend limit). Refused, the
 * slot is given back. Throws what the ledger throws, after arranging the release of a placement
 * that may have committed before the error reached us.
 *
 * With `speculative`, the work starts on the slot as soon as the group commit has decided the
 * reservation in memory and sent its append, while the commit is in flight; the work's output
 * is held back until the commit is durable (open()). If that commit fails (the store failed, or
 * another writer moved the account and the decision is made again), the work is cancelled at
 * once, before anything is answered: its GPU time wasted is bounded by one commit's latency, and
 * nothing reaches the client. When a decision made again commits, the dispatch starts afresh
 * after the commit (on a new slot, since the cancelled work gave its own back): the result's
 * `speculation` is then absent, and the caller dispatches on `placed.lease` as without one.
 */
export async function placeReservation<R = never>(
  deps: ReservationDeps,
  input: {
    readonly key: VerifiedKey;
    readonly model: string;
    readonly operation: AnyOperation;
    readonly amount: MicroUsd;
    readonly price: PriceInForce;
    readonly requestId: string;
    readonly speculative?: Speculative<R>;
  },
): Promise<{ readonly ok: true; readonly placed: Placed; readonly speculation?: Speculation<R> } | { readonly ok: false; readonly refusal: PlacementRefusal }> {
  const { key, model, operation, amount, price, speculative } = input;
  const slot = deps.inference.tryAcquire(model);
  if (slot.kind === 'unknown_model') return { ok: false, refusal: { kind: 'upstream_unavailable' } };
  if (slot.kind === 'at_capacity') return { ok: false, refusal: { kind: 'at_capacity', retryAfterSeconds: slot.retryAfterSeconds } };
  let lease = slot.lease;

  // Our own id: the client's x-request-id correlates, but may repeat; a reservation may not.
  const reservationId = `req_${randomUUID()}`;
  const metadata = commandMetadata(key, input.requestId, reservationId);
  const stream = accountStreamId(key.accountId);
  let speculation: Speculation<R> | undefined;
  let undone = false;
  const hooks = speculative && {
    decided: () => {
      // Once only: after an attempt failed, the dispatch waits for the durable commit.
      if (speculation || undone) return;
      speculation = speculative.start(lease);
    },
    undone: () => {
      undone = true;
      void speculation?.cancel();
    },
  };
  // The slot goes back with the work on it when it ran, else here.
  const giveBack = async (): Promise<void> => {
    if (speculation) await speculation.cancel();
    else lease.release();
  };
  let placed;
  try {
    placed = await deps.ledger.accounts.handle(
      stream,
      {
        type: 'PlaceReservation',
        data: {
          requestId: reservationId,
          keyId: key.keyId,
          model,
          operation,
          amount,
          priceVersion: price.version,
          ...(deps.instanceId === undefined ? {} : { instanceId: deps.instanceId }),
          ...(key.limits.spendLimit === null ? {} : { keySpendLimit: key.limits.spendLimit }),
        },
        metadata,
      },
      hooks,
    );
  } catch (error) {
    await giveBack();
    // The append may have committed before the error reached us (a connection lost mid-commit).
    // This instance lives on, so nothing else would end that hold before its deadline: release it.
    // Not tracked for shutdown: a stopping instance ends its lease, and the hold is expired at once.
    void releaseAbandonedReservation(deps, stream, reservationId, metadata);
    throw error;
  }
  if (!placed.ok) {
    await giveBack();
    return { ok: false, refusal: { kind: 'reservation_refused', error: placed.error } };
  }
  deps.metrics.reservationsOpen.inc();
  const placedEvent = placed.events.find((e) => e.event.type === 'ReservationPlaced')?.event;
  const expiresAt = placedEvent?.type === 'ReservationPlaced' ? Date.parse(placedEvent.data.expiresAt) : Date.now();
  if (speculation && !undone) {
    // Durable now: what the upstream has answered so far goes out, and the rest as it comes.
    speculation.open();
    return { ok: true, placed: { lease, key, reservationId, stream, metadata, price, expiresAt }, speculation };
  }
  if (speculation) {
    // Decided again and committed after the speculative work was cancelled: a slot again.
    await speculation.cancel();
    const again = deps.inference.tryAcquire(model);
    if (again.kind !== 'acquired') {
      const finished = deps.settlements.begin(key.accountId);
      finished(endReservation(deps, stream, reservationId, { kind: 'gateway_error' }, price, undefined, speculative!.logged, metadata, expiresAt));
      return {
        ok: false,
        refusal: again.kind === 'at_capacity' ? { kind: 'at_capacity', retryAfterSeconds: again.retryAfterSeconds } : { kind: 'upstream_unavailable' },
      };
    }
    lease = again.lease;
  }
  return { ok: true, placed: { lease, key, reservationId, stream, metadata, price, expiresAt } };
}

/** The dispatch's view of its window. */
export interface DispatchWindow {
  /** aborted when the client leaves or the maximum request duration is reached */
  readonly signal: AbortSignal;
  /** whether the maximum request duration ended it */
  overran(): boolean;
}

/** A dispatch window being watched: close() stops watching (the client, the maximum duration's timer). */
export interface OpenDispatchWindow extends DispatchWindow {
  close(): void;
}

/**
 * Starts watching for the client leaving and for the maximum request duration. Opened before the
 * placement when the dispatch may start while the reservation commits (the speculative dispatch
 * must stop when the client leaves too); else by serveReserved.
 */
export function openDispatchWindow(
  deps: Pick<ReservationDeps, 'maxRequestDurationMs'>,
  exchange: { onClientGone(listener: () => void): () => void },
): OpenDispatchWindow {
  const abort = new AbortController();
  const stopWatching = exchange.onClientGone(() => abort.abort());
  // The maximum request duration: end the upstream request ourselves, well before the deadline.
  let overran = false;
  const maxDuration =
    deps.maxRequestDurationMs === undefined
      ? undefined
      : setTimeout(() => {
          overran = true;
          abort.abort();
        }, deps.maxRequestDurationMs);
  return {
    signal: abort.signal,
    overran: () => overran,
    close() {
      stopWatching();
      clearTimeout(maxDuration);
    },
  };
}

/** What the dispatch reports: how it ended, for the charge policy, and the request's facts. */
export interface Dispatched {
  readonly outcome: RequestOutcome;
  readonly request: RequestMetadata | undefined;
}

/**
 * Runs the dispatch of a placed reservation, and ends the reservation by what it reports. The
 * client leaving or the maximum request duration aborts `window.signal`; the dispatch answers the
 * client itself. A throw is the gateway's own failure: `fail` answers it, and the customer pays
 * nothing. The reservation's ending (settlement or release, retried, then the request log) is
 * handed to the settlement tracker; the request's log line is held open until the dispatch is over.
 * `opened`: the window the caller opened before the placement (it is closed here).
 */
export async function serveReserved(
  deps: ReservationDeps,
  exchange: { readonly requestId: string; onClientGone(listener: () => void): () => void; holdLog(): () => void; fail(): void },
  placed: Placed,
  logged: LoggedRequest,
  dispatch: (window: DispatchWindow) => Promise<Dispatched>,
  opened?: OpenDispatchWindow,
): Promise<void> {
  const finished = deps.settlements.begin(placed.key.accountId);
  const releaseLog = exchange.holdLog();
  const window = opened ?? openDispatchWindow(deps, exchange);
  let ended: Dispatched;
  try {
    ended = await dispatch(window);
  } catch (error) {
    // Our fault, not the upstream's: the customer pays nothing.
    ended = { outcome: { kind: 'gateway_error' }, request: undefined };
    deps.logger.error({ requestId: exchange.requestId, err: { name: (error as Error).name } }, 'dispatch failed inside the gateway');
    exchange.fail();
  } finally {
    window.close();
  }
  releaseLog();
  const { stream, reservationId, price, metadata, expiresAt } = placed;
  finished(endReservation(deps, stream, reservationId, ended.outcome, price, ended.request, logged, metadata, expiresAt));
}

/** What the request log records of a request beside its money. */
export interface LoggedRequest {
  readonly accountId: string;
  readonly keyId: string;
  readonly model: string;
  readonly operation: AnyOperation;
  readonly stream: boolean;
}

/**
 * Settles or releases by the charge policy; retried, since the answer has already gone out,
 * until the reservation's deadline (epoch ms): a database outage must not
 * turn a served request into an expired, uncharged one.
 */
export async function endReservation(
  deps: Pick<ReservationDeps, 'ledger' | 'logger' | 'metrics'>,
  stream: string,
  requestId: string,
  outcome: RequestOutcome,
  price: PriceInForce,
  request: RequestMetadata | undefined,
  logged: LoggedRequest,
  metadata: CommandMetadata,
  expiresAt: number,
): Promise<void> {
  const charge = chargeFor(outcome);
  const command =
    charge.decision === 'settle'
      ? ({
          type: 'SettleReservation',
          data: { requestId, usage: charge.usage, price, outcome: charge.outcome },
          metadata: { ...metadata, now: new Date().toISOString() },
        } as const)
      : charge.decision === 'release'
        ? ({
            type: 'ReleaseReservation',
            data: { requestId, reason: charge.reason },
            metadata: { ...metadata, now: new Date().toISOString() },
          } as const)
        : undefined;
  if (!command) return;
  for (let attempt = 1; ; attempt++) {
    try {
      // Deferrable: the answer has gone out, so the next reservation may share this commit.
      const result = await deps.ledger.accounts.handle(stream, command, { deferrable: true });
      if (!result.ok) deps.logger.error({ requestId, error: result.error.error }, 'reservation could not be ended');
      deps.metrics.reservationsOpen.dec();
      if (result.ok && result.events.length > 0) await logRequest(deps, requestId, charge, request, logged, command.metadata);
      return;
    } catch (error) {
      const wait = Math.min(100 * 2 ** attempt, 2_000);
      if (Date.now() + wait >= expiresAt) {
        // The expiry process returns the hold at its deadline (or once this instance is gone).
        deps.logger.error({ requestId, attempts: attempt, err: { name: (error as Error).name } }, 'settlement failed; the reservation will expire');
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }
}

/**
 * The request's entry in the request log (metadata, kept for the retention days), once its money
 * is recorded. Not retried: losing a log entry to an outage loses no money, only a row of the
 * request list.
 */
async function logRequest(
  deps: Pick<ReservationDeps, 'ledger' | 'logger'>,
  requestId: string,
  charge: ReturnType<typeof chargeFor>,
  request: RequestMetadata | undefined,
  logged: LoggedRequest,
  metadata: CommandMetadata,
): Promise<void> {
  if (charge.decision === 'no_reservation') return;
  try {
    await deps.ledger.requestLog.record(
      {
        requestId,
        accountId: logged.accountId,
        keyId: logged.keyId,
        model: logged.model,
        operation: logged.operation,
        ended: charge.decision === 'settle' ? 'settled' : 'released',
        outcome: charge.decision === 'settle' ? charge.outcome : charge.reason,
        usage: charge.decision === 'settle' ? { ...charge.usage } : null,
        upstream: request?.upstream ?? null,
        httpStatus: request?.httpStatus ?? null,
        stream: request?.stream ?? logged.stream,
        latencyMs: request?.latencyMs ?? null,
        timeToFirstTokenMs: request?.timeToFirstTokenMs ?? null,
      },
      metadata,
    );
  } catch (error) {
    deps.logger.error({ requestId, err: { name: (error as Error).name } }, 'request log entry could not be written');
  }
}

/**
 * Releases a reservation whose placement failed with an unknown outcome. Usually it was never
 * written (reservation_not_found, nothing to do); if it was, this returns the hold. Retried
 * through a database outage until the reservation's latest possible deadline.
 */
export async function releaseAbandonedReservation(
  deps: Pick<ReservationDeps, 'ledger' | 'logger' | 'maxRequestDurationMs'>,
  stream: string,
  requestId: string,
  metadata: CommandMetadata,
): Promise<void> {
  const giveUpAt = Date.now() + (deps.maxRequestDurationMs ?? 600_000);
  for (let attempt = 1; ; attempt++) {
    // First wait: a commit in flight when the error came has landed or failed by then.
    await new Promise((resolve) => setTimeout(resolve, Math.min(500 * 2 ** attempt, 5_000)).unref());
    try {
      const result = await deps.ledger.accounts.handle(stream, {
        type: 'ReleaseReservation',
        data: { requestId, reason: 'gateway_error' },
        metadata: { ...metadata, now: new Date().toISOString() },
      });
      if (result.ok && result.events.length > 0) deps.logger.warn({ requestId }, 'released a reservation whose placement seemed to fail');
      return;
    } catch {
      if (Date.now() >= giveUpAt) {
        deps.logger.error({ requestId }, 'could not release a reservation whose placement seemed to fail; it expires at its deadline');
        return;
      }
    }
  }
}

/** The gateway, not the client, ended the request: record it so (a finish that raced the timer is a plain completion). */
export function overranOutcome(outcome: RequestOutcome): RequestOutcome {
  switch (outcome.kind) {
    case 'client_disconnected':
      return { kind: 'max_duration_reached', producedSoFar: outcome.producedSoFar };
    case 'completed_after_disconnect':
      return { kind: 'completed', usage: outcome.usage };
    default:
      return outcome;
  }
}

export function commandMetadata(key: VerifiedKey, correlationId: string, causationId: string): CommandMetadata {
  return { now: new Date().toISOString(), correlationId, causationId, actor: { kind: 'customer_key', keyId: key.keyId } };
}
