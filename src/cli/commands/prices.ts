import { Command } from 'commander';
import { contextOf } from '../context';

/** tollgate prices set */
export function registerPrices(program: Command): void {
  const prices = program
    .command('prices')
    .description('prices per model and operation: per million tokens, per audio second (transcription, translation), per million input characters (speech)');

  prices
    .command('set')
    .description('set a price from now or from a future instant; admitted requests keep the price they were admitted under')
    .argument('<modelId>', 'the model id')
    .requiredOption('--operation <operation>', 'chat, completion, embedding, transcription, translation or speech')
    .option('--input-usd <amount>', 'USD per million input tokens, e.g. 0.50', '0')
    .option('--output-usd <amount>', 'USD per million output tokens, e.g. 1.50', '0')
    .option('--usd-per-audio-second <amount>', 'transcription, translation: USD per second of audio, e.g. 0.0001')
    .option('--usd-per-million-characters <amount>', 'speech: USD per million input characters, e.g. 15')
    .option('--effective-at <instant>', 'when the price starts to apply (ISO-8601; default now)')
    .addHelpText(
      'after',
      '\nExamples:\n  tollgate prices set llama-3.1-8b --operation chat --input-usd 0.50 --output-usd 1.50\n' +
        '  tollgate prices set whisper-large-v3 --operation transcription --usd-per-audio-second 0.0001\n' +
        '  tollgate prices set tts-1 --operation speech --usd-per-million-characters 15\n' +
        '\nToken prices default to 0; a speech model may have both (they apply where the upstream reports tokens).',
    )
    .action(
      async (
        modelId: string,
        options: { operation: string; inputUsd: string; outputUsd: string; usdPerAudioSecond?: string; usdPerMillionCharacters?: string; effectiveAt?: string },
        command: Command,
      ) => {
        const ctx = contextOf(command);
        ctx.print(
          await ctx.admin.post('/admin/prices', {
            model: modelId,
            operation: options.operation,
            input_usd_per_million: options.inputUsd,
            output_usd_per_million: options.outputUsd,
            ...(options.usdPerAudioSecond !== undefined ? { usd_per_audio_second: options.usdPerAudioSecond } : {}),
            ...(options.usdPerMillionCharacters !== undefined ? { usd_per_million_characters: options.usdPerMillionCharacters } : {}),
            ...(options.effectiveAt !== undefined ? { effective_at: options.effectiveAt } : {}),
          }),
        );
      },
    );
}
