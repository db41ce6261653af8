import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';

/**
 * Checks real HTTP answers against an OpenAPI 3.1 document: the route and the status must be
 * documented, the content type must be one the document lists for that status, and a JSON body
 * must validate (JSON Schema 2020-12, ajv) against the schema given there. Records what it saw
 * so a test can demand that every documented operation was exercised.
 */

interface Operation {
  readonly responses: Record<string, { content?: Record<string, { schema?: unknown }> }>;
  readonly tags?: readonly string[];
}

export type OpenApiDocument = { paths: Record<string, Record<string, Operation>> } & Record<string, unknown>;

export interface Seen {
  readonly method: string;
  readonly template: string;
  readonly status: number;
  readonly tags: readonly string[];
}

export interface CheckedAnswer {
  readonly status: number;
  readonly headers: Headers;
  readonly contentType: string;
  readonly text: string;
  readonly body: any;
}

const METHODS = ['get', 'post', 'put', 'patch', 'delete'] as const;
const DOCUMENT_ID = 'https://tollgate.invalid/openapi.json';

export class OpenApiCheck {
  readonly seen: Seen[] = [];
  private readonly ajv: Ajv2020;
  private readonly templates: { template: string; pattern: RegExp }[];

  constructor(private readonly document: OpenApiDocument) {
    // strict off: the document holds OpenAPI keywords (example, paths, ...) beside JSON Schema's.
    this.ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats(this.ajv);
    this.ajv.addSchema({ ...document, $id: DOCUMENT_ID });
    this.templates = Object.keys(document.paths).map((template) => ({
      template,
      pattern: new RegExp(`^${template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\\?\{[^}]+\\?\}/g, '[^/]+')}$`),
    }));
  }

  /** Every documented operation, as "GET /v1/account". */
  operations(): { method: string; template: string; tags: readonly string[] }[] {
    return Object.entries(this.document.paths).flatMap(([template, item]) =>
      METHODS.filter((m) => item[m]).map((m) => ({ method: m.toUpperCase(), template, tags: item[m]!.tags ?? [] })),
    );
  }

  /** Sends a request and checks its answer against the document; throws on any mismatch. */
  async fetch(url: string, init: RequestInit & { method: string }): Promise<CheckedAnswer> {
    const response = await fetch(url, init);
    const text = await response.text();
    const contentType = (response.headers.get('content-type') ?? '').split(';')[0]!.trim();
    const answer: CheckedAnswer = {
      status: response.status,
      headers: response.headers,
      contentType,
      text,
      body: contentType === 'application/json' && text ? JSON.parse(text) : text,
    };
    this.check(init.method, new URL(url).pathname, answer);
    return answer;
  }

  check(method: string, path: string, answer: CheckedAnswer): void {
    const where = `${method} ${path} -> ${answer.status}`;
    const matched = this.templates.filter((t) => t.pattern.test(path));
    // A literal path wins over a template (none overlap today, but be exact if they ever do).
    const template = (matched.find((t) => !t.template.includes('{')) ?? matched[0])?.template;
    if (!template) throw new Error(`${where}: the route is not in the OpenAPI document`);
    const lower = method.toLowerCase();
    const operation = this.document.paths[template]![lower];
    if (!operation) throw new Error(`${where}: ${method} ${template} is not in the OpenAPI document`);
    const documented = operation.responses[String(answer.status)];
    if (!documented) {
      throw new Error(
        `${where}: status ${answer.status} is not documented for ${method} ${template} (documented: ${Object.keys(operation.responses).join(', ')}); body: ${answer.text.slice(0, 300)}`,
      );
    }
    const content = documented.content ?? {};
    if (!(answer.contentType in content)) {
      throw new Error(`${where}: content type '${answer.contentType}' is not documented (documented: ${Object.keys(content).join(', ') || 'none'})`);
    }
    if (answer.contentType === 'application/json') {
      const pointer = ['paths', template, lower, 'responses', String(answer.status), 'content', 'application/json', 'schema']
        .map((part) => encodeURIComponent(part.replace(/~/g, '~0').replace(/\//g, '~1')))
        .join('/');
      const validate = this.ajv.getSchema(`${DOCUMENT_ID}#/${pointer}`);
      if (!validate) throw new Error(`${where}: no schema at ${pointer}`);
      if (!validate(answer.body)) {
        throw new Error(`${where}: the body does not match the document: ${this.ajv.errorsText(validate.errors)}; body: ${answer.text.slice(0, 500)}`);
      }
    } else if (answer.contentType === 'text/event-stream') {
      if (!answer.text.startsWith('data: ')) throw new Error(`${where}: not a server-sent event stream`);
    }
    this.seen.push({ method: method.toUpperCase(), template, status: answer.status, tags: operation.tags ?? [] });
  }
}
