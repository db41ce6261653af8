/** A failure to report to the user as one line, with a non-zero exit. */
export class CliError extends Error {
  override readonly name = 'CliError';
}
