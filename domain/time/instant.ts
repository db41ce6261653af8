/**
 * Instants are ISO-8601 strings (as stored in events). The domain never reads a clock:
 * "now" arrives in every command's metadata. Parsing a given string is pure.
 */
export type IsoInstant = string;

export function toEpochMs(instant: IsoInstant): number {
  const ms = Date.parse(instant);
  if (Number.isNaN(ms)) throw new RangeError(`not an ISO instant: ${JSON.stringify(instant)}`);
  return ms;
}

export function addMs(instant: IsoInstant, ms: number): IsoInstant {
  return new Date(toEpochMs(instant) + ms).toISOString();
}

/** Compares instants by time, not text: offsets and precision may differ between writers. */
export function isBefore(a: IsoInstant, b: IsoInstant): boolean {
  return toEpochMs(a) < toEpochMs(b);
}

export function isAtOrAfter(a: IsoInstant, b: IsoInstant): boolean {
  return !isBefore(a, b);
}
