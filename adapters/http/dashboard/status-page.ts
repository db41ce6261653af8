import type { StatusView } from '../../../src/notices/status';

/** The public status page, made on the server (no script, no sign-in). */
export function statusPage(status: StatusView): string {
  const pct = (x: number) => `${(x * 100).toFixed(3)}%`;
  const words = { operational: 'All systems operational', degraded: 'Some models are down', maintenance: 'Maintenance in progress' } as const;
  const models = status.models
    .map(
      (m) =>
        `<tr><th scope="row">${esc(m.id)}</th><td>${esc(m.state)}</td><td class="num">${pct(m.uptime_30d)}</td><td class="num">${pct(m.uptime_90d)}</td>` +
        `<td>${m.meets_target_30d ? 'met' : 'missed'}</td></tr>`,
    )
    .join('\n');
  const maintenance = status.maintenance
    .map(
      (w) =>
        `<li><strong>${esc(w.subject)}</strong>: ${esc(time(w.starts_at))}${w.ends_at ? ` to ${esc(time(w.ends_at))}` : ''} UTC${w.in_progress ? ' (in progress)' : ''}. ${esc(w.body)}</li>`,
    )
    .join('\n');
  const incidents = status.incidents
    .map(
      (i) =>
        `<section aria-label="Incident: ${esc(i.subject)}"><h3>${esc(i.subject)}${i.resolved_at ? ' (resolved)' : ''}</h3>\n<ol>${i.updates
          .map((u) => `<li><time datetime="${esc(u.posted_at)}">${esc(time(u.posted_at))} UTC</time>: ${esc(u.body)}</li>`)
          .join('')}</ol></section>`,
    )
    .join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Status · Tollgate</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/dashboard/static/style.css">
</head>
<body>
<header class="topbar"><a class="brand" href="/dashboard/">Tollgate</a><nav aria-label="Site"><a href="/dashboard/pricing">Pricing</a> <a href="/dashboard/">Sign in</a></nav></header>
<main id="main" class="page">
<h1>Status</h1>
<p role="status" id="overall">${esc(words[status.state])}</p>
<table>
<caption>Models: availability as Tollgate observes it (target ${pct(status.target)} per month)</caption>
<thead><tr><th scope="col">Model</th><th scope="col">Now</th><th scope="col" class="num">Uptime, 30 days</th><th scope="col" class="num">Uptime, 90 days</th><th scope="col">Target, 30 days</th></tr></thead>
<tbody>
${models}
</tbody>
</table>
<h2>Maintenance</h2>
${maintenance ? `<ul>${maintenance}</ul>` : '<p>No maintenance is scheduled.</p>'}
<p>Announced maintenance windows are not counted against uptime.</p>
<h2>Incidents</h2>
${incidents || '<p>No incidents in the last 90 days.</p>'}
<p>Machine-readable: <a href="/status.json">/status.json</a>. As of ${esc(time(status.as_of))} UTC.</p>
</main>
</body>
</html>
`;
}

function time(iso: string): string {
  return iso.slice(0, 16).replace('T', ' ');
}

function esc(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
