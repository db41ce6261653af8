/** Plain JSON, structurally the same as src/ports Json (domain may not import src). */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
