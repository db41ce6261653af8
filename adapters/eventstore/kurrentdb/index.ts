export {
  createKurrentEventStore,
  createKurrentEventStoreFromConnectionString,
  type KurrentEventStoreOptions,
} from './store';
export { MissingLogPositionError } from './mapping';
