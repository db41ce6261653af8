import type { CatalogueEntry } from '../routes/catalogue';

/** The public pricing page, made on the server from the price book (no script, no sign-in). */
export function pricingPage(prices: readonly CatalogueEntry[], asOf: string): string {
  const rows = prices
    .map(
      (p) =>
        `<tr><th scope="row">${escapeHtml(p.model)}</th><td>${escapeHtml(p.operation)}</td>` +
        `<td class="num">${escapeHtml(displayUsd(p.input_usd_per_million))}</td><td class="num">${escapeHtml(displayUsd(p.output_usd_per_million))}</td>` +
        `<td class="num">${escapeHtml(audioPrice(p))}</td></tr>`,
    )
    .join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Pricing · Tollgate</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/dashboard/static/style.css">
</head>
<body>
<header class="topbar"><a class="brand" href="/dashboard/">Tollgate</a><nav aria-label="Site"><a href="/dashboard/">Sign in</a></nav></header>
<main id="main" class="page">
<h1>Pricing</h1>
<p>Prepaid credit, charged at the price in force when a request is admitted. Prices are in US dollars per million tokens; transcription and translation also per second of audio, speech per million input characters. A request's cost is rounded up to the next millionth of a dollar.</p>
${
  prices.length === 0
    ? '<p role="status">No models are on sale at the moment.</p>'
    : `<table>
<caption>Prices in force on ${escapeHtml(asOf.slice(0, 10))} (UTC)</caption>
<thead><tr><th scope="col">Model</th><th scope="col">Operation</th><th scope="col" class="num">Input, per million tokens</th><th scope="col" class="num">Output, per million tokens</th><th scope="col" class="num">Audio and speech</th></tr></thead>
<tbody>
${rows}
</tbody>
</table>`
}
<p>Machine-readable: <a href="/pricing">/pricing</a> (JSON).</p>
</main>
</body>
</html>
`;
}

/** The price in the operation's own unit: per audio second, per million characters, or none for tokens. */
function audioPrice(p: CatalogueEntry): string {
  if (p.usd_per_audio_second !== undefined) return `${displayUsd(p.usd_per_audio_second)} per second`;
  if (p.usd_per_million_characters !== undefined) return `${displayUsd(p.usd_per_million_characters)} per million characters`;
  return '';
}

/** "0.500000" to "$0.50", "0.000150" to "$0.00015": exact, from the decimal string, no float. */
export function displayUsd(decimal: string): string {
  const negative = decimal.startsWith('-');
  const [whole = '0', fraction = ''] = (negative ? decimal.slice(1) : decimal).split('.');
  const trimmed = fraction.replace(/0+$/, '').padEnd(2, '0');
  return `${negative ? '-' : ''}$${whole}.${trimmed}`;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
