// Every call goes to the gateway's ordinary JSON API. The session cookie (HttpOnly) travels by
// itself; the header marks the call as the dashboard's, which the server requires (CSRF).

export class ApiFailure extends Error {
  constructor(status, error) {
    super(error?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = error?.code ?? null;
  }
}

const listeners = new Set();
/** Called with the failure when a call answers 401: the session is gone (signed out, key revoked). */
export function onSignedOut(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export async function api(method, path, body, options = {}) {
  const headers = { 'x-tollgate-dashboard': '1', accept: options.accept ?? 'application/json', ...options.headers };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(path, { method, headers, credentials: 'same-origin', ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  if (options.raw) {
    if (!response.ok) throw new ApiFailure(response.status, null);
    return response;
  }
  const text = await response.text();
  const parsed = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const failure = new ApiFailure(response.status, parsed?.error);
    if (response.status === 401 && !options.quiet) for (const listener of listeners) listener(failure);
    throw failure;
  }
  return parsed;
}

export const get = (path, options) => api('GET', path, undefined, options);
export const post = (path, body) => api('POST', path, body ?? {});
export const put = (path, body) => api('PUT', path, body);
export const del = (path, body) => api('DELETE', path, body);

/** A query string from the defined, non-empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value !== undefined && value !== null && value !== '') search.set(name, String(value));
  const text = search.toString();
  return text ? `?${text}` : '';
}
