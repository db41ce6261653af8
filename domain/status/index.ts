export * from './uptime';
