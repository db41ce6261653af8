import { html } from 'htm/preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import { api, get, query } from '../api.js';
import { microOf, usd } from '../money.js';
import { Loading, Message, useAction, useLoad } from '../ui.js';

const COLORS = ['#1f5fbf', '#b3261e', '#1b7a3d', '#8a4fbf', '#a65f00', '#00708a'];
const DAY_MS = 86_400_000;

/** UTC dates "YYYY-MM-DD" from `days - 1` days ago to today. */
function periodOf(days) {
  const today = Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate());
  const dates = [];
  for (let i = days - 1; i >= 0; i--) dates.push(new Date(today - i * DAY_MS).toISOString().slice(0, 10));
  return { dates, from: dates[0], to: new Date(today + DAY_MS).toISOString().slice(0, 10) };
}

function sumBy(lines, keyOf) {
  const totals = new Map();
  for (const line of lines) {
    const key = keyOf(line);
    const t = totals.get(key) ?? { requests: 0, input: 0n, output: 0n, audioMs: 0n, characters: 0n, cost: 0n, errors: 0 };
    t.requests += line.requests;
    t.input += BigInt(line.input_tokens);
    t.output += BigInt(line.output_tokens);
    t.audioMs += audioMsOf(line);
    t.characters += BigInt(line.input_characters ?? 0);
    t.cost += microOf(line.cost);
    t.errors += line.errors;
    totals.set(key, t);
  }
  return totals;
}

/** Audio seconds (a decimal to the millisecond) as whole milliseconds, so sums stay exact. */
function audioMsOf(line) {
  return BigInt(Math.round((line.audio_seconds ?? 0) * 1000));
}

/** 1686n -> "1.686" */
function seconds(ms) {
  return `${(ms / 1000n).toLocaleString('en-US')}.${(ms % 1000n).toString().padStart(3, '0')}`;
}

/** A uPlot line chart of one value per day and model; the tables below carry the same numbers. */
function Chart({ title, dates, lines, models, value, format }) {
  const box = useRef(null);
  useEffect(() => {
    if (!box.current) return undefined;
    const x = dates.map((d) => Date.parse(`${d}T00:00:00Z`) / 1000);
    const series = models.map((model) => {
      const perDay = new Map();
      for (const line of lines.filter((l) => l.model === model)) perDay.set(line.day.slice(0, 10), (perDay.get(line.day.slice(0, 10)) ?? 0n) + value(line));
      return dates.map((d) => Number(perDay.get(d) ?? 0n));
    });
    const plot = new uPlot(
      {
        width: Math.max(320, Math.min(900, box.current.clientWidth || 800)),
        height: 240,
        tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
        series: [
          {},
          ...models.map((model, i) => ({
            label: model,
            stroke: COLORS[i % COLORS.length],
            width: 2,
            points: { show: true, size: 5 },
            value: (_u, v) => (v === null ? '—' : format(v)),
          })),
        ],
        axes: [{}, { values: (_u, ticks) => ticks.map(format), size: 80 }],
      },
      [x, ...series],
      box.current,
    );
    return () => plot.destroy();
  }, [dates, lines, models]);
  return html`<figure>
    <figcaption>${title}</figcaption>
    <div ref=${box} role="img" aria-label=${`${title}; the same figures are in the tables below`}></div>
  </figure>`;
}

export function UsagePage() {
  const [days, setDays] = useState(30);
  const period = periodOf(days);
  const usage = useLoad(() => Promise.all([get(`/v1/usage${query({ from: period.from, to: period.to })}`), get('/v1/account/keys')]), [days]);
  const download = useAction();

  const downloadCsv = () =>
    download.run(async () => {
      const response = await api('GET', `/v1/account/transactions${query({ from: period.from, to: period.to })}`, undefined, { accept: 'text/csv', raw: true });
      const blob = await response.blob();
      const link = document.createElement('a');
      link.href = URL.createObjectURL(blob);
      link.download = `tollgate-statement-${period.from}-to-${period.to}.csv`;
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
    });

  return html`
    <div class="toolbar" role="group" aria-label="Period">
      ${[30, 90].map((d) => html`<button type="button" class=${d === days ? '' : 'secondary'} aria-pressed=${d === days} onClick=${() => setDays(d)}>Last ${d} days</button>`)}
      <button type="button" class="secondary" onClick=${downloadCsv} disabled=${download.busy}>Download statement (CSV)</button>
    </div>
    <${Message} message=${download.message} />
    <${Loading} state=${usage}>${([{ data: lines }, { data: keys }]) => {
      const models = [...new Set(lines.map((l) => l.model))].sort();
      const byKey = sumBy(lines, (l) => l.key_id);
      const byModel = sumBy(lines, (l) => `${l.model} (${l.operation})`);
      const names = new Map(keys.map((k) => [k.key_id, `${k.name} (${k.prefix}…)`]));
      const total = [...byKey.values()].reduce((sum, t) => sum + t.cost, 0n);
      if (lines.length === 0) return html`<p>No requests in the last ${days} days.</p>`;
      // Speech is billed in audio seconds and characters: their charts and columns show when there is any.
      const audioModels = [...new Set(lines.filter((l) => audioMsOf(l) > 0n).map((l) => l.model))].sort();
      const speechModels = [...new Set(lines.filter((l) => (l.input_characters ?? 0) > 0).map((l) => l.model))].sort();
      const audio = audioModels.length > 0 || speechModels.length > 0;
      return html`
        <p>Spent in the last ${days} days: <strong id="usage-total">${usd(total)}</strong></p>
        <div class="charts">
          <${Chart} title="Cost per day (USD), by model" dates=${period.dates} lines=${lines} models=${models} value=${(l) => microOf(l.cost)} format=${(v) => usd(BigInt(Math.round(v)))} />
          <${Chart} title="Tokens per day (input + output), by model" dates=${period.dates} lines=${lines} models=${models} value=${(l) => BigInt(l.input_tokens + l.output_tokens)} format=${(v) => Math.round(v).toLocaleString('en-US')} />
          ${audioModels.length > 0 && html`<${Chart} title="Audio seconds per day (transcription, translation), by model" dates=${period.dates} lines=${lines.filter((l) => audioModels.includes(l.model))} models=${audioModels} value=${(l) => audioMsOf(l)} format=${(v) => (v / 1000).toLocaleString('en-US', { maximumFractionDigits: 3 })} />`}
          ${speechModels.length > 0 && html`<${Chart} title="Input characters per day (speech), by model" dates=${period.dates} lines=${lines.filter((l) => speechModels.includes(l.model))} models=${speechModels} value=${(l) => BigInt(l.input_characters ?? 0)} format=${(v) => Math.round(v).toLocaleString('en-US')} />`}
        </div>
        <h2>By key</h2>
        <${TotalsTable} id="usage-by-key" label="Key" rows=${[...byKey].map(([keyId, t]) => [names.get(keyId) ?? keyId, t])} audio=${audio} />
        <h2>By model</h2>
        <${TotalsTable} id="usage-by-model" label="Model" rows=${[...byModel]} audio=${audio} />`;
    }}<//>`;
}

function TotalsTable({ id, label, rows, audio }) {
  return html`<table id=${id}>
    <thead><tr><th scope="col">${label}</th><th scope="col" class="num">Requests</th><th scope="col" class="num">Errors</th><th scope="col" class="num">Input tokens</th><th scope="col" class="num">Output tokens</th>${
      audio && html`<th scope="col" class="num">Audio seconds</th><th scope="col" class="num">Input characters</th>`
    }<th scope="col" class="num">Cost</th></tr></thead>
    <tbody>${rows.map(
      ([name, t]) => html`<tr>
      <th scope="row">${name}</th><td class="num">${t.requests}</td><td class="num">${t.errors}</td><td class="num">${t.input.toLocaleString('en-US')}</td><td class="num">${t.output.toLocaleString('en-US')}</td>${
        audio && html`<td class="num">${seconds(t.audioMs)}</td><td class="num">${t.characters.toLocaleString('en-US')}</td>`
      }<td class="num">${usd(t.cost)}</td>
    </tr>`,
    )}</tbody>
  </table>`;
}
