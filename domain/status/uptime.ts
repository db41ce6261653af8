/**
 * Availability as Tollgate sees it, pure: from per-minute counts of observations (requests from
 * the request log, and probes of each upstream) per model and endpoint.
 *
 * - A request counts against availability when the upstream failed or answered 5xx (or the
 *   gateway failed it); a client's error (4xx) does not.
 * - A minute of a model is DOWN when, in any of its endpoints (the probe included), at least half
 *   of that minute's observations failed. A minute with no observation counts as up: nothing seen
 *   against it.
 * - Uptime over a period = 1 - down minutes / counted minutes, where announced maintenance
 *   windows are left out of both (shown apart, as the terms allow).
 */

export const UPTIME_TARGET = 0.995;
export const MINUTE_MS = 60_000;

export interface Observation {
  readonly model: string;
  /** chat, completion, embedding, or probe */
  readonly endpoint: string;
  /** start of the minute, epoch milliseconds */
  readonly minuteMs: number;
  readonly total: number;
  readonly failed: number;
}

export interface TimeWindow {
  readonly startMs: number;
  readonly endMs: number;
}

/** Whether a logged request counts against availability. */
export function requestCountsAsFailure(outcome: string, httpStatus: number | null): boolean {
  if (httpStatus !== null) return httpStatus >= 500;
  return outcome === 'gateway_error' || outcome === 'upstream_error' || outcome === 'upstream_error_no_tokens';
}

export function minuteIsDown(total: number, failed: number): boolean {
  return total > 0 && failed * 2 >= total;
}

export function floorToMinute(ms: number): number {
  return Math.floor(ms / MINUTE_MS) * MINUTE_MS;
}

function inAnyWindow(minuteMs: number, windows: readonly TimeWindow[]): boolean {
  return windows.some((w) => minuteMs + MINUTE_MS > w.startMs && minuteMs < w.endMs);
}

export interface Uptime {
  /** 0..1; 1 when nothing was counted */
  readonly uptime: number;
  readonly downMinutes: number;
  readonly countedMinutes: number;
  readonly maintenanceMinutes: number;
}

/** Uptime of one model over [fromMs, toMs) (whole minutes), maintenance windows left out. */
export function uptimeOf(observations: readonly Observation[], model: string, fromMs: number, toMs: number, maintenance: readonly TimeWindow[]): Uptime {
  const start = floorToMinute(fromMs);
  const end = floorToMinute(toMs);
  const down = new Set<number>();
  for (const o of observations) {
    if (o.model !== model || o.minuteMs < start || o.minuteMs >= end) continue;
    if (minuteIsDown(o.total, o.failed) && !inAnyWindow(o.minuteMs, maintenance)) down.add(o.minuteMs);
  }
  let maintenanceMinutes = 0;
  for (const w of maintenance) {
    const s = Math.max(start, floorToMinute(w.startMs));
    const e = Math.min(end, Math.ceil(w.endMs / MINUTE_MS) * MINUTE_MS);
    if (e > s) maintenanceMinutes += (e - s) / MINUTE_MS;
  }
  const countedMinutes = Math.max(0, (end - start) / MINUTE_MS - maintenanceMinutes);
  return { uptime: countedMinutes === 0 ? 1 : 1 - down.size / countedMinutes, downMinutes: down.size, countedMinutes, maintenanceMinutes };
}
