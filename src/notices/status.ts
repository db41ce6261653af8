import type { Pool, PoolClient } from 'pg';
import type { Logger } from 'pino';
import type { DomainEvent } from '../../domain/events';
import {
  MINUTE_MS,
  UPTIME_TARGET,
  floorToMinute,
  minuteIsDown,
  requestCountsAsFailure,
  uptimeOf,
  type Observation,
  type TimeWindow,
} from '../../domain/status';
import type { RecordedEvent } from '../ports/event-store';
import type { Migration } from '../ports/migration';
import { startPollLoop, type PollLoop } from '../process-managers/poll-loop';
import type { SqlProjection } from '../read-models/runner';

/**
 * Status and uptime: per-minute counts of what Tollgate observed per model and endpoint (requests
 * from the request log; probes of each upstream, endpoint `probe`), kept 90 days, and the public
 * status built from them (src/../domain/status/uptime.ts says how a minute counts).
 */
export const statusMigration: Migration = {
  id: '0076_status_observations',
  sql: `
    CREATE TABLE status_observations (
      model text NOT NULL,
      endpoint text NOT NULL,
      minute timestamptz NOT NULL,
      total integer NOT NULL,
      failed integer NOT NULL,
      PRIMARY KEY (model, endpoint, minute)
    );
    CREATE INDEX status_observations_minute ON status_observations (minute);
  `,
};

async function addObservations(db: Pool | PoolClient, rows: readonly Observation[]): Promise<void> {
  if (rows.length === 0) return;
  await db.query({
    name: 'tollgate_status_observations',
    text: `INSERT INTO status_observations (model, endpoint, minute, total, failed)
     SELECT o.model, o.endpoint, to_timestamp(o.minute_ms / 1000.0), sum(o.total), sum(o.failed)
       FROM jsonb_to_recordset($1::jsonb) AS o(model text, endpoint text, minute_ms bigint, total int, failed int)
      GROUP BY o.model, o.endpoint, o.minute_ms
     ON CONFLICT (model, endpoint, minute) DO UPDATE
       SET total = status_observations.total + excluded.total, failed = status_observations.failed + excluded.failed`,
    values: [JSON.stringify(rows.map((r) => ({ model: r.model, endpoint: r.endpoint, minute_ms: r.minuteMs, total: r.total, failed: r.failed })))],
  });
}

/** Requests from the request log, counted per minute (the checkpoint in the same transaction: never twice). */
export const statusProjection: SqlProjection<DomainEvent> = {
  name: 'status',
  async apply(db: PoolClient, events: readonly RecordedEvent<DomainEvent>[]) {
    const rows: Observation[] = [];
    for (const { event } of events) {
      if (event.type !== 'RequestLogged') continue;
      rows.push({
        model: event.data.model,
        endpoint: event.data.operation,
        minuteMs: floorToMinute(Date.parse(event.metadata.occurredAt)),
        total: 1,
        failed: requestCountsAsFailure(event.data.outcome, event.data.httpStatus) ? 1 : 0,
      });
    }
    await addObservations(db, rows);
  },
  async reset(db) {
    // Probe rows are not in the log: a rebuild keeps them and recounts the requests.
    await db.query("DELETE FROM status_observations WHERE endpoint <> 'probe'");
  },
};

export interface ProbedUpstream {
  readonly model: string;
  /** includes /v1 */
  readonly baseUrl: string;
  readonly apiKey?: string;
}

/**
 * Probes each upstream (GET {baseUrl}/models) on an interval and records the result as an
 * observation of endpoint `probe` at the clock's minute; a model is up in a minute when any of
 * its upstreams answers below 500. Runs on the one instance with the workers role.
 */
export class UpstreamProbe {
  private loop: PollLoop | undefined;

  constructor(
    private readonly deps: { pool: Pool; log: Logger; clock: () => Date; upstreams: () => readonly ProbedUpstream[] },
    private readonly options: { intervalMs: number; timeoutMs?: number },
  ) {}

  start(): void {
    this.loop = startPollLoop(() => this.runOnce().then(() => undefined), {
      intervalMs: this.options.intervalMs,
      onError: (error) => this.deps.log.warn({ err: { name: (error as Error).name, message: (error as Error).message } }, 'upstream probe failed to record'),
    });
  }

  async stop(): Promise<void> {
    await this.loop?.stop();
    this.loop = undefined;
  }

  /** One probe of every upstream; returns each model's result. */
  async runOnce(): Promise<Map<string, boolean>> {
    const byModel = new Map<string, boolean>();
    await Promise.all(
      this.deps.upstreams().map(async (u) => {
        const up = await this.probe(u);
        byModel.set(u.model, (byModel.get(u.model) ?? false) || up);
      }),
    );
    const minuteMs = floorToMinute(this.deps.clock().getTime());
    // Kept 90 days, as request metadata is.
    await this.deps.pool.query('DELETE FROM status_observations WHERE minute < $1', [new Date(minuteMs - 91 * 86_400_000)]);
    await addObservations(
      this.deps.pool,
      [...byModel].map(([model, up]) => ({ model, endpoint: 'probe', minuteMs, total: 1, failed: up ? 0 : 1 })),
    );
    return byModel;
  }

  private async probe(u: ProbedUpstream): Promise<boolean> {
    try {
      const response = await fetch(`${u.baseUrl}/models`, {
        headers: u.apiKey ? { authorization: `Bearer ${u.apiKey}` } : {},
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 5_000),
      });
      await response.arrayBuffer().catch(() => undefined);
      // Up when the server answers without a server error: some OpenAI-compatible servers have no
      // /models (404), which still shows they serve HTTP; a 5xx, a timeout or no connection is down.
      return response.status < 500;
    } catch {
      return false;
    }
  }
}

export interface StatusView {
  readonly as_of: string;
  readonly target: number;
  readonly state: 'operational' | 'degraded' | 'maintenance';
  readonly models: readonly {
    readonly id: string;
    readonly state: 'operational' | 'down' | 'maintenance';
    readonly uptime_30d: number;
    readonly uptime_90d: number;
    readonly meets_target_30d: boolean;
    readonly down_minutes_30d: number;
    readonly endpoints: readonly { endpoint: string; requests_30d: number; failed_30d: number; availability_30d: number }[];
  }[];
  readonly maintenance: readonly { id: string; subject: string; body: string; starts_at: string; ends_at: string | null; in_progress: boolean }[];
  readonly incidents: readonly {
    id: string;
    subject: string;
    started_at: string;
    resolved_at: string | null;
    updates: readonly { id: string; body: string; posted_at: string }[];
  }[];
}

const DAY_MS = 86_400_000;

/** The public status: per model current state and 30/90-day uptime, maintenance windows apart, incidents with their updates. */
export async function statusOf(pool: Pool, models: readonly string[], now: Date): Promise<StatusView> {
  const nowMs = now.getTime();
  const from90 = nowMs - 90 * DAY_MS;
  const { rows } = await pool.query<{ model: string; endpoint: string; minute: Date; total: number; failed: number }>(
    'SELECT model, endpoint, minute, total, failed FROM status_observations WHERE minute >= $1 AND minute <= $2',
    [new Date(from90), now],
  );
  const observations: Observation[] = rows.map((r) => ({
    model: r.model,
    endpoint: r.endpoint,
    minuteMs: r.minute.getTime(),
    total: r.total,
    failed: r.failed,
  }));
  const { rows: notices } = await pool.query<{
    notice_id: string;
    kind: string;
    subject: string;
    body: string;
    effective_at: Date;
    ends_at: Date | null;
    about: string | null;
    published_at: Date;
  }>(
    `SELECT notice_id, kind, subject, body, effective_at, ends_at, about, published_at FROM notices
      WHERE kind IN ('maintenance', 'incident') AND (ends_at IS NULL OR ends_at >= $1) ORDER BY published_at, seq`,
    [new Date(from90)],
  );
  const windows: TimeWindow[] = notices
    .filter((n) => n.kind === 'maintenance')
    .map((n) => ({ startMs: n.effective_at.getTime(), endMs: (n.ends_at ?? new Date(n.effective_at.getTime() + 3_600_000)).getTime() }));
  const inMaintenance = windows.some((w) => w.startMs <= nowMs && nowMs < w.endMs);
  const recentFrom = floorToMinute(nowMs) - 2 * MINUTE_MS;

  const modelViews = models.map((id) => {
    const u30 = uptimeOf(observations, id, nowMs - 30 * DAY_MS, nowMs + MINUTE_MS, windows);
    const u90 = uptimeOf(observations, id, from90, nowMs + MINUTE_MS, windows);
    // Down now: the latest minute observed in the last few is down.
    const recent = observations.filter((o) => o.model === id && o.minuteMs >= recentFrom);
    const latestMinute = Math.max(-1, ...recent.map((o) => o.minuteMs));
    const downNow = recent.some((o) => o.minuteMs === latestMinute && minuteIsDown(o.total, o.failed));
    const endpoints = new Map<string, { requests: number; failed: number }>();
    for (const o of observations) {
      if (o.model !== id || o.endpoint === 'probe' || o.minuteMs < nowMs - 30 * DAY_MS) continue;
      const e = endpoints.get(o.endpoint) ?? { requests: 0, failed: 0 };
      endpoints.set(o.endpoint, { requests: e.requests + o.total, failed: e.failed + o.failed });
    }
    return {
      id,
      state: inMaintenance ? ('maintenance' as const) : downNow ? ('down' as const) : ('operational' as const),
      uptime_30d: round(u30.uptime),
      uptime_90d: round(u90.uptime),
      meets_target_30d: u30.uptime >= UPTIME_TARGET,
      down_minutes_30d: u30.downMinutes,
      endpoints: [...endpoints]
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([endpoint, e]) => ({
          endpoint,
          requests_30d: e.requests,
          failed_30d: e.failed,
          availability_30d: round(e.requests === 0 ? 1 : 1 - e.failed / e.requests),
        })),
    };
  });

  const incidents = notices.filter((n) => n.kind === 'incident');
  const roots = incidents.filter((n) => n.about === null || n.about === n.notice_id);
  return {
    as_of: now.toISOString(),
    target: UPTIME_TARGET,
    state: inMaintenance ? 'maintenance' : modelViews.some((m) => m.state === 'down') ? 'degraded' : 'operational',
    models: modelViews,
    maintenance: notices
      .filter((n) => n.kind === 'maintenance' && (n.ends_at ?? n.effective_at).getTime() >= nowMs - 7 * DAY_MS)
      .map((n) => ({
        id: n.notice_id,
        subject: n.subject,
        body: n.body,
        starts_at: n.effective_at.toISOString(),
        ends_at: n.ends_at?.toISOString() ?? null,
        in_progress: n.effective_at.getTime() <= nowMs && (n.ends_at === null || nowMs < n.ends_at.getTime()),
      })),
    incidents: roots
      .map((root) => {
        const updates = incidents.filter((n) => n.about === root.notice_id && n.notice_id !== root.notice_id);
        const resolved = [root, ...updates].find((n) => n.ends_at !== null);
        return {
          id: root.notice_id,
          subject: root.subject,
          started_at: root.effective_at.toISOString(),
          resolved_at: resolved?.ends_at?.toISOString() ?? null,
          updates: [root, ...updates].map((n) => ({ id: n.notice_id, body: n.body, posted_at: n.published_at.toISOString() })),
        };
      })
      .reverse(),
  };
}

/** Six decimals: 0.999537 — enough for minutes in 90 days, stable in JSON. */
function round(x: number): number {
  return Math.round(x * 1_000_000) / 1_000_000;
}
