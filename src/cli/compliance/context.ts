import { InvalidArgumentError, type Command } from 'commander';

// The compliance commands share the database context of every direct-to-database command.
export { table } from '../context';
export { withDatabase as withCompliance, parseInstant, write, fail, type DatabaseContext as ComplianceContext } from '../lazy-database-context';

export function parsePositiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

/** --json given here or on the program. */
export function wantsJson(command: Command): boolean {
  return Boolean(command.optsWithGlobals<{ json?: boolean }>().json);
}

/** Adds --json unless an ancestor already has it (the main program's global --json). */
export function withJsonOption(command: Command, description: string): Command {
  let ancestor: Command | null = command.parent;
  while (ancestor) {
    if (ancestor.options.some((o) => o.long === '--json')) return command;
    ancestor = ancestor.parent;
  }
  return command.option('--json', description);
}
