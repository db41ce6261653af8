import { main } from './main';

/**
 * The `tollgate` command's entry point. bin/tollgate runs its compiled form (dist/); in
 * development, `npm run cli -- <args>` runs this file through tsx.
 */
void main(process.argv);
