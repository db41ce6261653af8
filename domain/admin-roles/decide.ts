import { accept, reject, type Decider, type Decision } from '../decider';
import type { AdminRole, AdminRoleEvent } from './events';

/** Who holds which operator role: user id to role. */
export type AdminRolesState = ReadonlyMap<string, AdminRole>;

export type AdminRolesCommand =
  /** give the user this role: a grant when they hold none, a change when another, nothing when the same */
  | { readonly type: 'AssignAdminRole'; readonly userId: string; readonly role: AdminRole; readonly emailCiphertext: string | null }
  | { readonly type: 'RevokeAdminRole'; readonly userId: string };

export type AdminRolesRefusal =
  | { readonly error: 'admin_not_found' }
  /** the change would leave no user with the operator role (the bootstrap key aside) */
  | { readonly error: 'last_operator' };

type RoleEvent = Exclude<AdminRoleEvent, { type: 'FinanceReportRun' }>;
type Data<T extends RoleEvent['type']> = Extract<RoleEvent, { type: T }>['data'];
type Bare = { [T in RoleEvent['type']]: { readonly type: T; readonly data: Data<T> } }[RoleEvent['type']];

function operatorsLeftWithout(state: AdminRolesState, userId: string): number {
  let n = 0;
  for (const [id, role] of state) if (role === 'operator' && id !== userId) n++;
  return n;
}

/**
 * The rules of operator roles: a revocation names a current admin; neither a revocation nor a
 * change of role may take the operator role from the last user holding it (so the last operator
 * cannot remove or demote themselves, nor be removed). Assigning the role a user already holds
 * changes nothing (a repeated `tollgate admins add` records no event).
 */
export const adminRolesDecider: Decider<AdminRolesCommand, AdminRolesState, Bare, AdminRolesRefusal> = {
  initialState: () => new Map(),
  decide(command, state): Decision<Bare, AdminRolesRefusal> {
    const current = state.get(command.userId);
    switch (command.type) {
      case 'AssignAdminRole': {
        if (current === undefined) {
          return accept({ type: 'AdminRoleGranted', data: { userId: command.userId, role: command.role, emailCiphertext: command.emailCiphertext } });
        }
        if (current === command.role) return accept();
        if (current === 'operator' && operatorsLeftWithout(state, command.userId) === 0) return reject({ error: 'last_operator' });
        return accept({ type: 'AdminRoleChanged', data: { userId: command.userId, role: command.role, previousRole: current } });
      }
      case 'RevokeAdminRole': {
        if (current === undefined) return reject({ error: 'admin_not_found' });
        if (current === 'operator' && operatorsLeftWithout(state, command.userId) === 0) return reject({ error: 'last_operator' });
        return accept({ type: 'AdminRoleRevoked', data: { userId: command.userId, previousRole: current } });
      }
    }
  },
  evolve(state, event) {
    const next = new Map(state);
    switch (event.type) {
      case 'AdminRoleGranted':
      case 'AdminRoleChanged':
        next.set(event.data.userId, event.data.role);
        break;
      case 'AdminRoleRevoked':
        next.delete(event.data.userId);
        break;
    }
    return next;
  },
};

/** Which /admin calls an operator role may make. */
export function adminRoleAllows(role: AdminRole, method: string, path: string): boolean {
  const read = method === 'GET' || method === 'HEAD';
  const financeRead = read && (/^\/admin\/accounts\/[^/]+\/(statement|balance)$/.test(path) || /^\/admin\/finance\/(journal|verification)$/.test(path));
  const complianceRead =
    read &&
    (/^\/admin\/(audit|retention)(\/|$)/.test(path) || /^\/admin\/accounts(\/[^/]+)?$/.test(path) || /^\/admin\/compliance\/exports\/[^/]+$/.test(path));
  // Compliance's own: the audit log, retention and personal-data exports stay with compliance.
  const complianceOnly = /^\/admin\/(audit|retention|compliance)(\/|$)/.test(path);
  switch (role) {
    case 'finance':
      return financeRead;
    case 'compliance':
      return complianceRead;
    case 'operator':
      return !complianceOnly;
  }
}
