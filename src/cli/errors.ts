/** A failure to report to the user as one line, with a non-zero exit. */
export class CliError extends Error {
  override readonly name = 'CliError';
}

/** A one-line description of anything thrown: an error by its message, anything else as text. */
export function describeFailure(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  if (error === undefined || error === null) return `failed without a reason (${String(error)})`;
  return typeof error === 'string' ? error : JSON.stringify(error);
}
