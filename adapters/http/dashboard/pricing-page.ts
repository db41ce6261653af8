import type { CatalogueEntry, ModelCard, ScheduledPriceEntry } from '../routes/catalogue';

/** The public pricing page, made on the server from the price book (no script, no sign-in). */
export function pricingPage(
  prices: readonly CatalogueEntry[],
  asOf: string,
  scheduled: readonly ScheduledPriceEntry[] = [],
  models: readonly ModelCard[] = [],
): string {
  const rows = prices
    .map(
      (p) =>
        `<tr><th scope="row">${escapeHtml(p.model)}</th><td>${escapeHtml(p.operation)}</td>` +
        `<td class="num">${escapeHtml(displayUsd(p.input_usd_per_million))}</td><td class="num">${escapeHtml(displayUsd(p.output_usd_per_million))}</td>` +
        `<td class="num">${escapeHtml(audioPrice(p))}</td></tr>`,
    )
    .join('\n');
  const scheduledRows = scheduled
    .map(
      (p) =>
        `<tr><th scope="row">${escapeHtml(p.model)}</th><td>${escapeHtml(p.operation)}</td><td>${escapeHtml(p.effective_at.slice(0, 16).replace('T', ' '))} UTC</td>` +
        `<td class="num">${escapeHtml(displayUsd(p.input_usd_per_million))}</td><td class="num">${escapeHtml(displayUsd(p.output_usd_per_million))}</td>` +
        `<td>${p.increase ? 'increase' : 'decrease or new'}</td></tr>`,
    )
    .join('\n');
  const cards = models.map((m) => modelSection(m)).join('\n');
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
<header class="topbar"><a class="brand" href="/dashboard/">Tollgate</a><nav aria-label="Site"><a href="/status">Status</a> <a href="/dashboard/">Sign in</a></nav></header>
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
${
  scheduled.length === 0
    ? ''
    : `<table>
<caption>Scheduled price changes</caption>
<thead><tr><th scope="col">Model</th><th scope="col">Operation</th><th scope="col">Effective from</th><th scope="col" class="num">Input, per million tokens</th><th scope="col" class="num">Output, per million tokens</th><th scope="col">Change</th></tr></thead>
<tbody>
${scheduledRows}
</tbody>
</table>`
}
${models.length === 0 ? '' : `<h2>Models</h2>\n${cards}`}
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

function modelSection(m: ModelCard): string {
  const status =
    m.status === 'deprecated' && m.retires_at ? `deprecated, retires on ${escapeHtml(m.retires_at.slice(0, 16).replace('T', ' '))} UTC` : escapeHtml(m.status);
  const rules = m.model_rules
    ? `<p>${escapeHtml(m.model_rules.text)}</p>${m.model_rules.url ? `<p><a href="${escapeHtml(safeUrl(m.model_rules.url))}" rel="noopener">Model Rules for ${escapeHtml(m.id)}</a></p>` : ''}`
    : '<p>No Model Rules beyond the terms of service.</p>';
  return `<section aria-labelledby="model-${escapeHtml(slug(m.id))}">
<h3 id="model-${escapeHtml(slug(m.id))}">${escapeHtml(m.id)}</h3>
<dl>
<dt>Status</dt><dd>${status}</dd>
${m.description ? `<dt>Description</dt><dd>${escapeHtml(m.description)}</dd>` : ''}
${m.context_length ? `<dt>Context length</dt><dd>${m.context_length.toLocaleString('en-US')} tokens</dd>` : ''}
${m.licence ? `<dt>Licence</dt><dd>${escapeHtml(m.licence)}</dd>` : ''}
<dt>Model Rules</dt><dd>${rules}</dd>
</dl>
</section>`;
}

/** Only http(s) links are rendered as links; anything else becomes a harmless fragment. */
function safeUrl(url: string): string {
  return /^https?:\/\//i.test(url) ? url : '#';
}

function slug(id: string): string {
  return id.replace(/[^A-Za-z0-9_-]/g, '-');
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
