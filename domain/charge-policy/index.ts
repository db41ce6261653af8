export * from './charge-policy';
export * from './outcome-names';
