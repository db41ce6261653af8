export * from './catalogue';
export * from './codec';
export * from './define';
export * from './json';
export * from './metadata';
export * from './schema';
