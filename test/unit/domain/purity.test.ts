import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve, dirname } from 'node:path';

/** domain/ stays pure: no imports from outside it but zod, ts-pattern and immutable (persistent collections), no clock, no randomness. */
const DOMAIN = resolve(__dirname, '../../../domain');

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : path.endsWith('.ts') ? [path] : [];
  });
}

describe('domain purity', () => {
  const sources = files(DOMAIN);
  it('finds the domain sources', () => expect(sources.length).toBeGreaterThan(10));

  it.each(sources.map((f) => [relative(DOMAIN, f), f]))('%s imports only domain/, zod, ts-pattern and immutable', (_name, file) => {
    const text = readFileSync(file, 'utf8');
    for (const [, spec] of text.matchAll(/from\s+'([^']+)'/g)) {
      if (spec === 'zod' || spec === 'ts-pattern' || spec === 'immutable') continue;
      expect(spec!.startsWith('.')).toBe(true);
      expect(relative(DOMAIN, resolve(dirname(file), spec!)).startsWith('..')).toBe(false);
    }
  });

  it.each(sources.map((f) => [relative(DOMAIN, f), f]))('%s reads no clock and draws no random numbers', (_name, file) => {
    const text = readFileSync(file, 'utf8');
    expect(text).not.toMatch(/Date\.now\(|new Date\(\)|Math\.random|performance\.now|randomUUID|process\./);
  });
});
