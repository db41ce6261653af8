import { z } from 'zod';
import { CliError } from './errors';

/** Any JSON the gateway answers with; commands read fields they know and print the rest. */
export type JsonObject = { readonly [key: string]: unknown };

const errorBodySchema = z.object({
  error: z.object({ message: z.string(), code: z.string().nullable().optional(), param: z.string().nullable().optional() }),
});

/**
 * Calls the admin HTTP API of a running gateway with the admin key. Errors become a CliError
 * carrying the API's own message (OpenAI-shaped body), never the key.
 */
export class AdminClient {
  constructor(
    readonly baseUrl: string,
    private readonly adminKey: string | undefined,
  ) {}

  get<T extends JsonObject = JsonObject>(path: string): Promise<T> {
    return this.request('GET', path);
  }

  post<T extends JsonObject = JsonObject>(path: string, body: object = {}): Promise<T> {
    return this.request('POST', path, body);
  }

  delete<T extends JsonObject = JsonObject>(path: string, body: object = {}): Promise<T> {
    return this.request('DELETE', path, body);
  }

  private async request<T extends JsonObject>(method: string, path: string, body?: object): Promise<T> {
    if (!this.adminKey) throw new CliError('no admin key: set TOLLGATE_ADMIN_KEY or pass --admin-key');
    let url: URL;
    try {
      url = new URL(path, this.baseUrl);
    } catch {
      throw new CliError('--url is not a valid URL (e.g. http://127.0.0.1:8080)');
    }
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        headers: { authorization: `Bearer ${this.adminKey}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        ...(body ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(30_000),
      });
    } catch (error) {
      const cause = (error as { cause?: { code?: unknown } }).cause;
      const code = typeof cause?.code === 'string' ? cause.code : (error as Error).name;
      throw new CliError(`cannot reach the gateway at ${url.origin} (${code})`);
    }
    const text = await response.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : {};
    } catch {
      throw new CliError(`the gateway answered HTTP ${response.status} with a body that is not JSON; is ${url.origin} a Tollgate gateway?`);
    }
    if (!response.ok) {
      const parsed = errorBodySchema.safeParse(json);
      if (!parsed.success) throw new CliError(`the gateway answered HTTP ${response.status}`);
      const { message, code } = parsed.data.error;
      throw new CliError(code ? `${message} (${code})` : message);
    }
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new CliError('the gateway answered with unexpected JSON');
    return json as T;
  }
}
