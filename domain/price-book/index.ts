export * from './commands';
export * from './decide';
export * from './errors';
export * from './events';
export * from './operation';
export * from './state';
