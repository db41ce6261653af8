/** A tiny JSON client for the admin and customer APIs in tests. */
export interface Answer {
  readonly status: number;
  readonly body: any;
}

export function apiClient(baseUrl: string) {
  return async function call(method: string, path: string, key: string | null, body?: unknown): Promise<Answer> {
    const headers: Record<string, string> = {};
    if (key !== null) headers['authorization'] = `Bearer ${key}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const response = await fetch(`${baseUrl}${path}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : null };
  };
}

export const inOneHour = () => new Date(Date.now() + 3_600_000).toISOString();
