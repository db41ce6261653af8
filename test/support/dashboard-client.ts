/**
 * A browser-like client of the dashboard's JSON API for integration tests: it keeps the session
 * cookie between calls (as a browser does) and sends the dashboard header.
 */
export class DashboardClient {
  cookie: string | null = null;

  constructor(readonly baseUrl: string) {}

  async call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any; headers: Headers }> {
    const response = await fetch(`${this.baseUrl}${path}`, {
      method,
      headers: {
        'x-tollgate-dashboard': '1',
        ...(body !== undefined && { 'content-type': 'application/json' }),
        ...(this.cookie !== null && { cookie: this.cookie }),
        ...headers,
      },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
    const setCookie = response.headers.get('set-cookie');
    if (setCookie) {
      const [pair] = setCookie.split(';');
      const value = pair!.slice(pair!.indexOf('=') + 1);
      this.cookie = value === '' ? null : pair!;
    }
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON
    }
    return { status: response.status, body: parsed, headers: response.headers };
  }

  get(path: string) {
    return this.call('GET', path);
  }

  post(path: string, body: unknown = {}) {
    return this.call('POST', path, body);
  }

  patch(path: string, body: unknown = {}) {
    return this.call('PATCH', path, body);
  }

  delete(path: string) {
    return this.call('DELETE', path);
  }
}
