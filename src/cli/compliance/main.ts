import { Command } from 'commander';
import { registerComplianceCommands } from './index';

/**
 * The compliance commands on their own (`node --import tsx src/cli/compliance/main.ts ...`): for
 * tests and for operators who only need these; `tollgate` registers the same commands.
 */
const program = new Command('tollgate-compliance').description('Audit log, retention, export and correction of personal data.');
registerComplianceCommands(program);
program.parseAsync().catch((error: Error) => {
  process.stderr.write(`tollgate: ${error.name}: ${error.message}\n`);
  process.exitCode = 2;
});
