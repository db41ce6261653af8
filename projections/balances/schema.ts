/** The finance read models' tables: balances, usage, journal (one migration, they ship together). */
export const financeProjectionsMigration = {
  id: '0010_finance_projections',
  sql: `
    -- One row per account. Money is micro-USD in bigint; available and negative are derived.
    CREATE TABLE balances (
      account_id text PRIMARY KEY,
      purchased bigint NOT NULL,
      promo bigint NOT NULL,
      reserved bigint NOT NULL,
      available bigint GENERATED ALWAYS AS (purchased + promo - reserved) STORED,
      negative boolean GENERATED ALWAYS AS (purchased < 0) STORED,
      last_tx bigint NOT NULL,
      last_seq bigint NOT NULL,
      -- occurredAt of the last event applied: derived from the log, so a rebuild reproduces it
      updated_at timestamptz NOT NULL
    );

    -- Usage per account, key, model, operation and UTC day.
    CREATE TABLE usage_daily (
      account_id text NOT NULL,
      key_id text NOT NULL,
      model text NOT NULL,
      operation text NOT NULL,
      day date NOT NULL,
      requests bigint NOT NULL,
      input_tokens bigint NOT NULL,
      output_tokens bigint NOT NULL,
      cost bigint NOT NULL,
      errors bigint NOT NULL,
      latency_ms_sum bigint NOT NULL,
      latency_count bigint NOT NULL,
      PRIMARY KEY (account_id, day, key_id, model, operation)
    );

    -- The usage projection's own memory of open reservations: ReservationReleased and
    -- ReservationExpired do not name the key, model and operation, ReservationPlaced does.
    CREATE TABLE usage_open_reservations (
      account_id text NOT NULL,
      request_id text NOT NULL,
      key_id text NOT NULL,
      model text NOT NULL,
      operation text NOT NULL,
      PRIMARY KEY (account_id, request_id)
    );

    -- Double-entry journal: amount > 0 is a debit, < 0 a credit; each event's lines sum to 0.
    CREATE TABLE journal_postings (
      tx bigint NOT NULL,
      seq bigint NOT NULL,
      line smallint NOT NULL,
      account_id text NOT NULL,
      ledger_account text NOT NULL,
      amount bigint NOT NULL,
      event_type text NOT NULL,
      occurred_at timestamptz NOT NULL,
      PRIMARY KEY (tx, seq, line)
    );
    CREATE INDEX journal_postings_occurred_at ON journal_postings (occurred_at);
  `,
};

/**
 * Speech is billed in audio seconds and input characters: usage keeps them beside the tokens.
 * Every row written before is a token request, so 0 is right for it.
 */
export const usageAudioUnitsMigration = {
  id: '0050_usage_audio_units',
  sql: `
    ALTER TABLE usage_daily
      ADD COLUMN audio_ms bigint NOT NULL DEFAULT 0,
      ADD COLUMN input_characters bigint NOT NULL DEFAULT 0;
  `,
};
