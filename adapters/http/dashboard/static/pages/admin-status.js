import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { get, post } from '../api.js';
import { Field, Loading, Message, When, useAction, useLoad } from '../ui.js';

const pct = (x) => `${(x * 100).toFixed(3)}%`;

/** The operator's view of the status page, with incidents and their updates. */
export function StatusPage() {
  const status = useLoad(() => get('/admin/status'));
  const action = useAction();
  const [subject, setSubject] = useState('');
  const [body, setBody] = useState('');
  const open = async (event) => {
    event.preventDefault();
    const done = await action.run(() => post('/admin/notices', { kind: 'incident', subject, body }), `Incident "${subject}" posted.`);
    if (done) {
      setSubject('');
      setBody('');
      void status.reload(); // never rejects
    }
  };
  const update = async (event, incident) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const done = await action.run(
      () => post(`/admin/incidents/${encodeURIComponent(incident.id)}/updates`, { body: form.get('body'), resolved: form.get('resolved') === 'on' }),
      `Update to "${incident.subject}" posted.`,
    );
    if (done) void status.reload(); // never rejects
  };
  return html`
    <p><a href="/status">The public status page</a></p>
    <${Message} message=${action.message} />
    <${Loading} state=${status}>
      ${(s) => html`
        <p role="status">State: ${s.state}</p>
        <table id="status-table">
          <caption>Uptime against the ${pct(s.target)} target (maintenance left out)</caption>
          <thead><tr><th scope="col">Model</th><th scope="col">Now</th><th scope="col" class="num">30 days</th><th scope="col" class="num">90 days</th></tr></thead>
          <tbody>
            ${s.models.map(
              (m) =>
                html`<tr key=${m.id}><th scope="row">${m.id}</th><td>${m.state}</td><td class="num">${pct(m.uptime_30d)}</td><td class="num">${pct(m.uptime_90d)}</td></tr>`,
            )}
          </tbody>
        </table>
        <h2>Incidents</h2>
        ${s.incidents.length === 0 ? html`<p>No incidents in the last 90 days.</p>` : null}
        ${s.incidents.map(
          (i) => html`<section key=${i.id} aria-label=${`Incident ${i.subject}`}>
            <h3>${i.subject}${i.resolved_at ? ' (resolved)' : ''}</h3>
            <ol>${i.updates.map((u) => html`<li key=${u.id}><${When} at=${u.posted_at} />: ${u.body}</li>`)}</ol>
            ${
              i.resolved_at
                ? null
                : html`<form onSubmit=${(e) => update(e, i)}>
                  <${Field} label=${`Update to ${i.subject}`} id=${`update-${i.id}`} name="body" required />
                  <label><input type="checkbox" name="resolved" /> Resolves it</label>
                  <button type="submit" disabled=${action.busy}>Post update</button>
                </form>`
            }
          </section>`,
        )}`}
    <//>
    <h2>Post an incident</h2>
    <form onSubmit=${open}>
      <${Field} label="Incident subject" id="incident-subject" value=${subject} onInput=${(e) => setSubject(e.currentTarget.value)} required />
      <${Field} label="What is happening" id="incident-body" value=${body} onInput=${(e) => setBody(e.currentTarget.value)} required />
      <button type="submit" disabled=${action.busy}>Post incident</button>
    </form>`;
}
