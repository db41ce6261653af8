/** The pure domain of Tollgate: import from here or from a capability folder. */
export * from './decider';
export * from './money';
export * from './time';
export * from './events';
export * from './account';
export * from './price-book';
export * from './api-key';
export * from './charge-policy';
export * from './estimate';
export * from './retention';
export * from './personal-data-access';
export * from './mail';
export * from './user';
export * from './request-log';
export * from './notice';
export * from './status';
export * from './admin-roles';
