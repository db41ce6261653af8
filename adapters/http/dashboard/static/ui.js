import { html } from 'htm/preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';

/** Loads with `load()` on mount and whenever `deps` change; `reload()` loads again. */
export function useLoad(load, deps = []) {
  const [state, setState] = useState({ loading: true, data: null, error: null });
  const generation = useRef(0);
  const reload = useCallback(async () => {
    const mine = ++generation.current;
    setState((s) => ({ ...s, loading: true }));
    try {
      const data = await load();
      if (mine === generation.current) setState({ loading: false, data, error: null });
    } catch (error) {
      if (mine === generation.current) setState({ loading: false, data: null, error });
    }
  }, deps);
  useEffect(() => {
    void reload(); // never rejects: a failure becomes state.error
  }, [reload]);
  return { ...state, reload };
}

/** Runs an action with a busy flag; its failure becomes a message, its success an optional one. */
export function useAction() {
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState(null);
  const run = async (action, success) => {
    setBusy(true);
    setMessage(null);
    try {
      const result = await action();
      if (success) setMessage({ kind: 'ok', text: typeof success === 'function' ? success(result) : success });
      return result;
    } catch (error) {
      setMessage({ kind: 'error', text: error.message });
      return undefined;
    } finally {
      setBusy(false);
    }
  };
  return { busy, message, run, setMessage };
}

export function Message({ message }) {
  if (!message) return null;
  return message.kind === 'error'
    ? html`<p class="notice error" role="alert">${message.text}</p>`
    : html`<p class="notice ok" role="status">${message.text}</p>`;
}

export function Loading({ state, children }) {
  if (state.error) return html`<p class="notice error" role="alert">${state.error.message}</p>`;
  if (state.data === null) return html`<p role="status" aria-live="polite">Loading…</p>`;
  return children(state.data);
}

/** A labelled input; extra props go to the <input>. */
export function Field({ label, id, hint, ...input }) {
  return html`<div class="field">
    <label for=${id}>${label}</label>
    <input id=${id} ...${input} aria-describedby=${hint ? `${id}-hint` : undefined} />
    ${hint ? html`<small id=${`${id}-hint`}>${hint}</small>` : null}
  </div>`;
}

export function Select({ label, id, options, ...select }) {
  return html`<div class="field">
    <label for=${id}>${label}</label>
    <select id=${id} ...${select}>
      ${options.map((o) => html`<option value=${o.value}>${o.label}</option>`)}
    </select>
  </div>`;
}

/** A date-time the browser shows in local time, for an ISO instant. */
export function When({ at }) {
  if (!at) return '—';
  const date = new Date(at);
  return html`<time datetime=${at}>${date.toISOString().replace('T', ' ').slice(0, 16)} UTC</time>`;
}

/** An <input type="datetime-local"> value, read as UTC, to an ISO instant. */
export function instantFromLocalInput(value) {
  return value ? new Date(`${value}:00Z`).toISOString() : undefined;
}

export function Stat({ label, value, id }) {
  return html`<div class="stat"><dt>${label}</dt><dd id=${id}>${value}</dd></div>`;
}
