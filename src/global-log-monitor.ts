import type { Logger } from 'pino';
import type { GlobalLogBlocker, GlobalLogLag } from './ports/event-store';

/** What /readyz and the metrics show of the global log. */
export interface GlobalLogHealth {
  /** readers have been held back for at least the configured threshold */
  readonly stalled: boolean;
  readonly lagSeconds: number;
  readonly hiddenEvents: number;
}

export interface GlobalLogGauges {
  set(lag: { seconds: number; hiddenEvents: number; blockerAgeSeconds: number }): void;
}

/**
 * Watches how far global-log readers (projections, process managers, the live log) trail the
 * committed log. On PostgreSQL any transaction left open anywhere in the cluster holds them back
 * (see README, "Long transactions"); revocations and suspensions do not wait for them (stream
 * announcements), but balances, usage and the audit log shown to people do. Past the threshold it
 * warns, naming the blocking backend, and /readyz reports degraded.
 */
export class GlobalLogMonitor {
  private timer: NodeJS.Timeout | undefined;
  private current: GlobalLogHealth = { stalled: false, lagSeconds: 0, hiddenEvents: 0 };
  private lastWarnedAt = -Infinity;
  private checking: Promise<void> | undefined;

  constructor(
    private readonly measure: () => Promise<GlobalLogLag>,
    private readonly gauges: GlobalLogGauges,
    private readonly log: Logger,
    private readonly options: {
      /** lag, in seconds, from which the log counts as stalled */
      readonly stalledAfterS: number;
      /** how often the lag is measured (default: a tenth of `stalledAfterS`, 1 to 5 s) */
      readonly intervalMs?: number;
      /** while it stays stalled, the warning is repeated this often */
      readonly warnEveryMs?: number;
    },
  ) {}

  start(): void {
    // A tenth of the threshold, between 1 and 5 s: a stall is still seen within a tenth of its
    // threshold's time, and an idle instance does not read the log's horizon every second
    // (each instance runs its own monitor: bench/idle.ts).
    const intervalMs = this.options.intervalMs ?? Math.min(5_000, Math.max(1_000, this.options.stalledAfterS * 100));
    const tick = () => {
      this.checking = this.check().finally(() => {
        this.checking = undefined;
        if (this.timer) this.timer = setTimeout(tick, intervalMs).unref();
      });
    };
    this.timer = setTimeout(tick, 0).unref();
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.checking;
  }

  health(): GlobalLogHealth {
    return this.current;
  }

  /** One measurement: gauges, health, and the warning or the all-clear. Never rejects. */
  async check(): Promise<void> {
    let lag: GlobalLogLag;
    try {
      lag = await this.measure();
    } catch {
      // The database is unreachable: /readyz says so on its own, and the lag is unknown, not zero.
      return;
    }
    const wasStalled = this.current.stalled;
    const stalled = lag.seconds >= this.options.stalledAfterS;
    this.current = { stalled, lagSeconds: lag.seconds, hiddenEvents: lag.hiddenEvents };
    this.gauges.set({ seconds: lag.seconds, hiddenEvents: lag.hiddenEvents, blockerAgeSeconds: lag.blocker?.transactionAgeSeconds ?? 0 });
    if (stalled) {
      const now = performance.now();
      if (!wasStalled || now - this.lastWarnedAt >= (this.options.warnEveryMs ?? 30_000)) {
        this.lastWarnedAt = now;
        this.log.warn(
          { lagSeconds: round(lag.seconds), hiddenEvents: lag.hiddenEvents, blocker: describe(lag.blocker) },
          'global log stalled: an open transaction holds back projections and process managers; end it, or set idle_in_transaction_session_timeout',
        );
      }
    } else if (wasStalled) {
      this.log.info({ lagSeconds: round(lag.seconds) }, 'global log caught up');
    }
  }
}

function describe(blocker: GlobalLogBlocker | null) {
  if (!blocker) return null;
  return {
    pid: blocker.pid,
    database: blocker.database,
    applicationName: blocker.applicationName,
    state: blocker.state,
    transactionAgeSeconds: blocker.transactionAgeSeconds === null ? null : round(blocker.transactionAgeSeconds),
    ...(blocker.preparedTransaction === null ? {} : { preparedTransaction: blocker.preparedTransaction }),
  };
}

const round = (seconds: number) => Math.round(seconds * 10) / 10;
