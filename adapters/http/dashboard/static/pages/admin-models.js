import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { del, get, post } from '../api.js';
import { decimalFromInput, usd } from '../money.js';
import { Field, Loading, Message, Select, When, instantFromLocalInput, useAction, useLoad } from '../ui.js';

const OPERATIONS = ['chat', 'completion', 'embedding', 'transcription', 'translation', 'speech'];
/** Speech operations are priced in their own unit too (per audio second, per million characters). */
const UNIT_PRICE = {
  transcription: { field: 'usd_per_audio_second', label: 'USD per audio second' },
  translation: { field: 'usd_per_audio_second', label: 'USD per audio second' },
  speech: { field: 'usd_per_million_characters', label: 'USD per million input characters' },
};

export function ModelsPage() {
  const models = useLoad(() => get('/admin/models'));
  const action = useAction();
  const [added, setAdded] = useState({ id: '', operations: ['chat'], maxOutputTokens: '4096' });
  const [price, setPrice] = useState({ model: '', operation: 'chat', input: '', output: '', unit: '', effective: '' });
  const [retiring, setRetiring] = useState(null);

  const act = async (call, success) => {
    const done = await action.run(call, success);
    if (done) void models.reload(); // never rejects: a failure shows as the list's error
    return done;
  };
  const addModel = (event) => {
    event.preventDefault();
    // act() never rejects: action.run turns a failure into the form's message.
    void act(
      () => post('/admin/models', { id: added.id.trim(), operations: added.operations, max_output_tokens: Number(added.maxOutputTokens) }),
      `Model ${added.id.trim()} added. It is on sale once it has a price.`,
    ).then((done) => done && setAdded({ id: '', operations: ['chat'], maxOutputTokens: '4096' }));
  };
  const setPriceOf = (event) => {
    event.preventDefault();
    const input = decimalFromInput(price.input);
    const output = decimalFromInput(price.output);
    if (input === null || output === null) return action.setMessage({ kind: 'error', text: 'Enter both prices in dollars per million tokens, such as 0.20.' });
    const unitPrice = UNIT_PRICE[price.operation];
    const unit = unitPrice ? decimalFromInput(price.unit) : null;
    if (unitPrice && unit === null) return action.setMessage({ kind: 'error', text: `Enter the price in ${unitPrice.label}, such as 0.0001.` });
    const effectiveAt = instantFromLocalInput(price.effective);
    return act(
      () =>
        post('/admin/prices', {
          model: price.model,
          operation: price.operation,
          input_usd_per_million: input,
          output_usd_per_million: output,
          ...(unitPrice ? { [unitPrice.field]: unit } : {}),
          ...(effectiveAt ? { effective_at: effectiveAt } : {}),
        }),
      (p) => `Price version ${p.version} for ${p.model} (${p.operation}) takes effect ${p.effective_at.replace('T', ' ').slice(0, 16)} UTC.`,
    );
  };
  const toggle = (operation) =>
    setAdded({
      ...added,
      operations: added.operations.includes(operation) ? added.operations.filter((o) => o !== operation) : [...added.operations, operation],
    });

  return html`
    <${Message} message=${action.message} />
    <${Loading} state=${models}>${({ data }) => html`
      <table id="models-table">
        <thead><tr><th scope="col">Model</th><th scope="col">Operations</th><th scope="col" class="num">Max output</th><th scope="col">Prices (per million tokens, input / output)</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
        <tbody>${data.map(
          (m) => html`<tr key=${m.id}>
          <th scope="row">${m.id}${m.retired ? ' (retired)' : ''}</th><td>${m.operations.join(', ')}</td><td class="num">${m.max_output_tokens.toLocaleString('en-US')}</td>
          <td><ul class="plain">${m.prices.map((p) => html`<li>${p.operation}: ${usd(p.input_usd_per_million)} / ${usd(p.output_usd_per_million)}${p.usd_per_audio_second ? `, ${usd(p.usd_per_audio_second)} per audio second` : ''}${p.usd_per_million_characters ? `, ${usd(p.usd_per_million_characters)} per million characters` : ''} ${p.in_force ? '(in force)' : html`(from <${When} at=${p.effective_at} />)`}</li>`)}</ul></td>
          <td>${
            !m.retired &&
            (retiring === m.id
              ? html`<span class="confirm">Retire ${m.id}? <button type="button" class="danger" onClick=${() => act(() => del(`/admin/models/${encodeURIComponent(m.id)}`), `Model ${m.id} is retired.`).then(() => setRetiring(null))}>Yes, retire</button> <button type="button" class="secondary" onClick=${() => setRetiring(null)}>Keep it</button></span>`
              : html`<button type="button" class="secondary" aria-label=${`Retire model ${m.id}`} onClick=${() => setRetiring(m.id)}>Retire</button>`)
          }</td>
        </tr>`,
        )}</tbody>
      </table>
      <form onSubmit=${setPriceOf} class="inline-form" aria-labelledby="price-heading">
        <h2 id="price-heading">Set or schedule a price</h2>
        <${Select} label="Model" id="price-model" required value=${price.model} onChange=${(e) => setPrice({ ...price, model: e.currentTarget.value })}
          options=${[{ value: '', label: 'Choose a model' }, ...data.filter((m) => !m.retired).map((m) => ({ value: m.id, label: m.id }))]} />
        <${Select} label="Operation" id="price-operation" value=${price.operation} onChange=${(e) => setPrice({ ...price, operation: e.currentTarget.value })} options=${OPERATIONS.map((o) => ({ value: o, label: o }))} />
        <${Field} label="Input, USD per million" id="price-input" inputmode="decimal" required value=${price.input} onInput=${(e) => setPrice({ ...price, input: e.currentTarget.value })} />
        <${Field} label="Output, USD per million" id="price-output" inputmode="decimal" required value=${price.output} onInput=${(e) => setPrice({ ...price, output: e.currentTarget.value })} />
        ${UNIT_PRICE[price.operation] && html`<${Field} label=${UNIT_PRICE[price.operation].label} id="price-unit" inputmode="decimal" required value=${price.unit} onInput=${(e) => setPrice({ ...price, unit: e.currentTarget.value })} />`}
        <${Field} label="Effective from (UTC)" id="price-effective" type="datetime-local" value=${price.effective} onInput=${(e) => setPrice({ ...price, effective: e.currentTarget.value })} hint="Empty: at once. Admitted requests keep the price they were admitted at." />
        <button type="submit" disabled=${action.busy}>Save price</button>
      </form>`}<//>
    <form onSubmit=${addModel} class="inline-form" aria-labelledby="add-model-heading">
      <h2 id="add-model-heading">Add a model</h2>
      <${Field} label="Model id" id="model-id" required value=${added.id} onInput=${(e) => setAdded({ ...added, id: e.currentTarget.value })} hint="What clients send as model." />
      <fieldset><legend>Operations</legend>
        ${OPERATIONS.map((o) => html`<label class="check"><input type="checkbox" checked=${added.operations.includes(o)} onChange=${() => toggle(o)} /> ${o}</label>`)}
      </fieldset>
      <${Field} label="Max output tokens" id="model-max-output" type="number" min="1" required value=${added.maxOutputTokens} onInput=${(e) => setAdded({ ...added, maxOutputTokens: e.currentTarget.value })} />
      <button type="submit" disabled=${action.busy}>Add model</button>
    </form>`;
}
