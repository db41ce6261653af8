import { createProgram } from './program';
import { CliError, describeFailure } from './errors';

/**
 * `tollgate` (bin/tollgate): the admin command line. A failure prints one line to stderr and
 * exits non-zero; nothing it prints contains the admin key.
 */
export async function main(argv: readonly string[] = process.argv): Promise<void> {
  try {
    await createProgram().parseAsync([...argv]);
  } catch (error) {
    if (error instanceof CliError) {
      process.stderr.write(`tollgate: ${error.message}\n`);
      process.exitCode = 1;
      return;
    }
    const name = error instanceof Error ? error.name : 'failure';
    process.stderr.write(`tollgate: unexpected ${name}: ${describeFailure(error)}\n`);
    process.exitCode = 2;
  }
}
