import { Command, InvalidArgumentError } from 'commander';
import { commaList, contextOf, pathId } from '../context';

function positiveInteger(value: string): number {
  if (!/^[1-9]\d{0,8}$/.test(value)) throw new InvalidArgumentError('expected a positive integer.');
  return Number(value);
}

/** tollgate models add | retire | list */
export function registerModels(program: Command): void {
  const models = program.command('models').description('the models the price book offers');

  models
    .command('list')
    .description('list every model with its operations, output cap, and the prices in force or scheduled')
    .action(async (_options: object, command: Command) => {
      const ctx = contextOf(command);
      ctx.print(await ctx.admin.get('/admin/models'));
    });

  models
    .command('add')
    .description('add a model to the price book (it is served once an upstream in the models file serves it, and priced with `prices set`)')
    .argument('<modelId>', 'the id clients send as `model`, e.g. meta-llama/Llama-3.1-8B-Instruct')
    .requiredOption('--operations <operations>', 'comma-separated: chat, completion, embedding, transcription, translation, speech', commaList)
    .requiredOption('--max-output-tokens <n>', 'output cap used to estimate a reservation when a request sets no max_tokens', positiveInteger)
    .action(async (modelId: string, options: { operations: string[]; maxOutputTokens: number }, command: Command) => {
      const ctx = contextOf(command);
      ctx.print(await ctx.admin.post('/admin/models', { id: modelId, operations: options.operations, max_output_tokens: options.maxOutputTokens }));
    });

  models
    .command('retire')
    .description('retire a model: new requests for it are refused; requests already admitted settle as usual')
    .argument('<modelId>', 'the model id')
    .action(async (modelId: string, _options: object, command: Command) => {
      const ctx = contextOf(command);
      ctx.print(await ctx.admin.delete(`/admin/models/${pathId(modelId)}`));
    });
}
