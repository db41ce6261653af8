/**
 * CSV (RFC 4180) that a spreadsheet opens as data, never as formulas. Statements and journals
 * are opened in spreadsheets, and their text cells can carry what a customer or an operator
 * typed (a name, a reason, a payment reference). As OWASP's "CSV Injection" page advises, a
 * text cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage return is prefixed with a
 * single quote, which spreadsheets read as "this is text". Number columns (amounts as exact
 * decimal strings, counts) are written as they are, so a negative amount stays a number; a
 * number column given anything but a decimal number is a programming error and throws rather
 * than slip text past the guard.
 *
 * Fields holding a comma, a double quote, CR or LF are quoted (quotes doubled), as RFC 4180 says.
 */

export interface CsvColumn {
  readonly name: string;
  readonly kind: 'text' | 'number';
}

/** Characters that make a spreadsheet treat a cell as a formula (or the start of one). */
const FORMULA_START = /^[=+\-@\t\r]/;
const DECIMAL = /^-?\d+(\.\d+)?$/;

/** A text cell as a spreadsheet can only read it as text: a leading single quote when it could start a formula. */
export function neutraliseFormula(text: string): string {
  return FORMULA_START.test(text) ? `'${text}` : text;
}

function quoted(field: string): string {
  return /[",\r\n]/.test(field) ? `"${field.replaceAll('"', '""')}"` : field;
}

function cell(column: CsvColumn, value: string): string {
  if (column.kind === 'number') {
    if (value !== '' && !DECIMAL.test(value)) throw new Error(`CSV column ${column.name} holds numbers; got something else`);
    return value;
  }
  return quoted(neutraliseFormula(value));
}

/** The header line and one line per row, each ended by CRLF. Empty number cells stay empty. */
export function toCsv(columns: readonly CsvColumn[], rows: readonly (readonly string[])[]): string {
  const header = columns.map((c) => quoted(neutraliseFormula(c.name))).join(',');
  const lines = rows.map((row) => {
    if (row.length !== columns.length) throw new Error(`CSV row of ${row.length} cells for ${columns.length} columns`);
    return row.map((value, i) => cell(columns[i]!, value)).join(',');
  });
  return [header, ...lines].join('\r\n') + '\r\n';
}

/** Shorthands for column lists: textColumn('reference'), numberColumn('amount_usd'). */
export const textColumn = (name: string): CsvColumn => ({ name, kind: 'text' });
export const numberColumn = (name: string): CsvColumn => ({ name, kind: 'number' });
