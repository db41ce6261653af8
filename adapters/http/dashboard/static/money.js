// Money in the browser: the API sends exact decimal USD strings ("12.345678"); sums are made in
// BigInt micro-USD and shown exactly. A float appears only as a chart coordinate.

const MICRO = 1_000_000n;

/** "12.345678" or "-0.5" to micro-USD as a BigInt; throws on anything else. */
export function microOf(decimal) {
  const match = /^(-)?(\d+)(?:\.(\d{1,6}))?$/.exec(String(decimal).trim());
  if (!match) throw new Error(`not a USD amount: ${decimal}`);
  const micro = BigInt(match[2]) * MICRO + BigInt((match[3] ?? '').padEnd(6, '0'));
  return match[1] ? -micro : micro;
}

/** Micro-USD to "$1,234.50" or "$0.000123": every significant digit, at least two decimals. */
export function usd(micro) {
  const value = typeof micro === 'bigint' ? micro : microOf(micro);
  const negative = value < 0n;
  const magnitude = negative ? -value : value;
  const whole = (magnitude / MICRO).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  const fraction = (magnitude % MICRO).toString().padStart(6, '0').replace(/0+$/, '').padEnd(2, '0');
  return `${negative ? '-' : ''}$${whole}.${fraction}`;
}

/** "$25" / "25.5" typed by a person to the API's decimal string, or null when it is not an amount. */
export function decimalFromInput(text) {
  const cleaned = String(text).trim().replace(/^\$/, '').replace(/,/g, '');
  return /^\d+(\.\d{1,6})?$/.test(cleaned) ? cleaned : null;
}
