import type { Command } from 'commander';
import type * as AdminClientModule from './admin-client';
import type { AdminClient, JsonObject } from './admin-client';

export const DEFAULT_URL = 'http://127.0.0.1:8080';

/** What every command gets from the global options: the API client and the output style. */
export interface CliContext {
  readonly admin: AdminClient;
  /** --json was given. */
  readonly json: boolean;
  /** Writes to stdout. */
  out(text: string): void;
  /** Prints the answer: raw JSON with --json, otherwise readable text (and an optional note). */
  print(answer: JsonObject, note?: string): void;
}

interface GlobalOptions {
  url: string;
  adminKey?: string;
  json?: boolean;
}

export function contextOf(command: Command, out: (text: string) => void = (text) => process.stdout.write(text)): CliContext {
  const options = command.optsWithGlobals<GlobalOptions>();
  // Loaded when a command runs, not when the CLI starts: it brings zod, which `--help` does not need.
  const { AdminClient } = require('./admin-client') as typeof AdminClientModule;
  return {
    admin: new AdminClient(options.url, options.adminKey),
    json: Boolean(options.json),
    out,
    print(answer, note) {
      if (options.json) {
        out(`${JSON.stringify(answer, null, 2)}\n`);
        return;
      }
      out(render(answer));
      if (note) out(`\n${note}\n`);
    },
  };
}

/** For options given as comma-separated lists: "chat,completion" -> ["chat", "completion"]. */
export function commaList(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

export function pathId(id: string): string {
  return encodeURIComponent(id);
}

/**
 * Readable text for a JSON answer: one `key: value` line per field, nested objects and lists
 * indented. Strings are printed as they are (no quotes), so amounts read "10.500000".
 */
export function render(value: unknown, indent = ''): string {
  if (Array.isArray(value)) {
    if (value.length === 0) return `${indent}(none)\n`;
    return value
      .map((item) => {
        if (item !== null && typeof item === 'object') {
          const block = render(item, `${indent}  `);
          return `${indent}- ${block.slice(indent.length + 2)}`;
        }
        return `${indent}- ${scalar(item)}\n`;
      })
      .join('');
  }
  if (value !== null && typeof value === 'object') {
    return Object.entries(value)
      .map(([key, field]) => {
        if (field !== null && typeof field === 'object') {
          const empty = Array.isArray(field) ? field.length === 0 : Object.keys(field).length === 0;
          return empty ? `${indent}${key}: (none)\n` : `${indent}${key}:\n${render(field, `${indent}  `)}`;
        }
        return `${indent}${key}: ${scalar(field)}\n`;
      })
      .join('');
  }
  return `${indent}${scalar(value)}\n`;
}

function scalar(value: unknown): string {
  return value === null || value === undefined ? '-' : String(value);
}

/** Columns padded to their widest cell; the last column is not padded. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}
