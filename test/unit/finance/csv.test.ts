import fc from 'fast-check';
import { formatUsd } from '../../../domain/money';
import { neutraliseFormula, numberColumn, textColumn, toCsv } from '../../../src/finance/csv';
import { journalCsv, statementCsv } from '../../../src/finance/statements';

/** RFC 4180 as a spreadsheet reads it: quoted fields may hold commas, doubled quotes, CR and LF. */
function parseCsv(csv: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let inQuotes = false;
  for (let i = 0; i < csv.length; i++) {
    const c = csv[i]!;
    if (inQuotes) {
      if (c === '"' && csv[i + 1] === '"') (field += '"'), i++;
      else if (c === '"') inQuotes = false;
      else field += c;
    } else if (c === '"') inQuotes = true;
    else if (c === ',') row.push(field), (field = '');
    else if (c === '\r' && csv[i + 1] === '\n') {
      row.push(field), rows.push(row), (row = []), (field = ''), i++;
    } else field += c;
  }
  return rows;
}

const FORMULA_STARTS = ['=', '+', '-', '@', '\t', '\r'];
/** Text with the characters that matter here over-represented. */
const hostileText = fc.string({
  unit: fc.oneof(fc.constantFrom(...FORMULA_STARTS, ',', '"', '\n', "'", ';', ' '), fc.string({ minLength: 1, maxLength: 1, unit: 'binary' })),
  maxLength: 30,
});

test('a text cell that could start a formula gets a leading single quote; any other text is kept as it is', () => {
  for (const start of FORMULA_STARTS) expect(neutraliseFormula(`${start}1+1`)).toBe(`'${start}1+1`);
  expect(neutraliseFormula('invoice-1042')).toBe('invoice-1042');
  expect(neutraliseFormula(' =1')).toBe(' =1');
  expect(neutraliseFormula('')).toBe('');
  expect(toCsv([textColumn('reference')], [['=HYPERLINK("http://evil.example","click")']])).toBe(
    'reference\r\n"\'=HYPERLINK(""http://evil.example"",""click"")"\r\n',
  );
});

test('property: every text cell reads back as its text, quote-prefixed exactly when it could start a formula, and no cell begins a formula', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(hostileText, hostileText), { minLength: 1, maxLength: 5 }), (rows) => {
      const parsed = parseCsv(toCsv([textColumn('name'), textColumn('reason')], rows));
      expect(parsed).toHaveLength(rows.length + 1);
      parsed.slice(1).forEach((cells, r) => {
        cells.forEach((cell, c) => {
          const original = rows[r]![c]!;
          const dangerous = FORMULA_STARTS.some((s) => original.startsWith(s));
          expect(cell).toBe(dangerous ? `'${original}` : original);
          expect(FORMULA_STARTS.some((s) => cell.startsWith(s))).toBe(false);
        });
      });
    }),
    { seed: 13, numRuns: 500 },
  );
});

test('property: money columns stay numbers, negative amounts included: written unquoted and unprefixed, read back as the same amount', () => {
  fc.assert(
    fc.property(fc.bigInt({ min: -(10n ** 15n), max: 10n ** 15n }), fc.bigInt({ min: 0n, max: 2n ** 63n - 1n }), (micro, count) => {
      const amount = formatUsd(micro);
      const csv = toCsv([numberColumn('amount_usd'), numberColumn('log_seq')], [[amount, count.toString()]]);
      expect(csv).toBe(`amount_usd,log_seq\r\n${amount},${count}\r\n`);
      const [, [cell]] = parseCsv(csv) as [string[], string[]];
      expect(cell).toBe(amount);
      expect(BigInt(cell!.replace('.', ''))).toBe(micro); // six decimals: the same micro-USD
    }),
    { seed: 13, numRuns: 1_000 },
  );
  expect(toCsv([numberColumn('debit_usd')], [['']])).toBe('debit_usd\r\n\r\n');
});

test('a number column given text is refused, never written unguarded', () => {
  expect(() => toCsv([numberColumn('amount_usd')], [['=1+1']])).toThrow('CSV column amount_usd holds numbers');
  expect(() => toCsv([numberColumn('amount_usd')], [['1e3']])).toThrow();
  expect(() => toCsv([textColumn('a'), textColumn('b')], [['only one']])).toThrow('CSV row of 1 cells for 2 columns');
});

test('statements and journals: a hostile reference or account id is neutralised, their amounts stay numeric', () => {
  const statement = statementCsv({
    accountId: 'acct_1',
    openingBalance: 0n,
    closingBalance: -1_500_000n,
    lines: [
      {
        occurredAt: '2026-11-01T00:00:00.000Z',
        eventId: 'evt_1',
        eventType: 'TopUpCompleted',
        reference: '=cmd|" /C calc"!A0',
        purchasedChange: 1_000_000n,
        promoChange: 0n,
        amount: 1_000_000n,
        balance: 1_000_000n,
      },
      {
        occurredAt: '2026-11-02T00:00:00.000Z',
        eventId: 'evt_2',
        eventType: 'ReservationSettled',
        reference: '@SUM(1+1)',
        purchasedChange: -2_500_000n,
        promoChange: 0n,
        amount: -2_500_000n,
        balance: -1_500_000n,
      },
    ],
  });
  const rows = parseCsv(statement);
  expect(rows[1]).toEqual(['2026-11-01T00:00:00.000Z', 'evt_1', 'TopUpCompleted', `'=cmd|" /C calc"!A0`, '1.000000', '0.000000', '1.000000', '1.000000']);
  expect(rows[2]).toEqual(['2026-11-02T00:00:00.000Z', 'evt_2', 'ReservationSettled', "'@SUM(1+1)", '-2.500000', '0.000000', '-2.500000', '-1.500000']);
  expect(statement).toContain(',-2.500000,0.000000,-2.500000,-1.500000\r\n');

  const journal = journalCsv([
    {
      tx: 7n,
      seq: 1n,
      line: 0,
      occurredAt: '2026-11-02T00:00:00.000Z',
      eventType: 'ReservationSettled',
      accountId: '+acct',
      ledgerAccount: 'revenue',
      amount: -2_500_000n,
    },
  ]);
  expect(parseCsv(journal)[1]).toEqual(['7', '1', '0', '2026-11-02T00:00:00.000Z', 'ReservationSettled', "'+acct", 'revenue', '', '2.500000']);
});
