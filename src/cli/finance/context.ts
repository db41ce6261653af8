// The finance commands share the database context of every direct-to-database command.
export { withDatabase as withFinance, parseInstant, write, fail, type DatabaseContext as FinanceContext } from '../lazy-database-context';
