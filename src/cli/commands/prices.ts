import { Command } from 'commander';
import { contextOf } from '../context';

/** tollgate prices set */
export function registerPrices(program: Command): void {
  const prices = program.command('prices').description('prices per million tokens, per model and operation');

  prices
    .command('set')
    .description('set a price from now or from a future instant; admitted requests keep the price they were admitted under')
    .argument('<modelId>', 'the model id')
    .requiredOption('--operation <operation>', 'chat, completion or embedding')
    .requiredOption('--input-usd <amount>', 'USD per million input tokens, e.g. 0.50')
    .requiredOption('--output-usd <amount>', 'USD per million output tokens, e.g. 1.50')
    .option('--effective-at <instant>', 'when the price starts to apply (ISO-8601; default now)')
    .addHelpText('after', '\nExample:\n  tollgate prices set llama-3.1-8b --operation chat --input-usd 0.50 --output-usd 1.50')
    .action(async (modelId: string, options: { operation: string; inputUsd: string; outputUsd: string; effectiveAt?: string }, command: Command) => {
      const ctx = contextOf(command);
      ctx.print(
        await ctx.admin.post('/admin/prices', {
          model: modelId,
          operation: options.operation,
          input_usd_per_million: options.inputUsd,
          output_usd_per_million: options.outputUsd,
          ...(options.effectiveAt !== undefined ? { effective_at: options.effectiveAt } : {}),
        }),
      );
    });
}
