import { adminRoleAllows, adminRolesDecider } from '../../../../domain/admin-roles';
import { deciderSpec } from '../decider-spec';

const given = deciderSpec(adminRolesDecider);
const granted = (userId: string, role: 'operator' | 'finance' | 'compliance') =>
  ({ type: 'AdminRoleGranted', data: { userId, role, emailCiphertext: null } }) as const;

describe('admin roles decider', () => {
  it("grants a role to a user who holds none, recording a new user's email ciphertext", () => {
    given([])
      .when({ type: 'AssignAdminRole', userId: 'usr_a', role: 'operator', emailCiphertext: 'ct' })
      .then([{ type: 'AdminRoleGranted', data: { userId: 'usr_a', role: 'operator', emailCiphertext: 'ct' } }]);
  });

  it('assigning the role a user already holds records nothing', () => {
    given([granted('usr_a', 'finance')])
      .when({ type: 'AssignAdminRole', userId: 'usr_a', role: 'finance', emailCiphertext: null })
      .then([]);
  });

  it('changes a role, naming the previous one', () => {
    given([granted('usr_a', 'operator'), granted('usr_b', 'finance')])
      .when({ type: 'AssignAdminRole', userId: 'usr_b', role: 'compliance', emailCiphertext: null })
      .then([{ type: 'AdminRoleChanged', data: { userId: 'usr_b', role: 'compliance', previousRole: 'finance' } }]);
  });

  it('the last operator can be neither demoted nor removed, not even by themselves', () => {
    const history = [granted('usr_a', 'operator'), granted('usr_b', 'finance')];
    given(history).when({ type: 'AssignAdminRole', userId: 'usr_a', role: 'finance', emailCiphertext: null }).then({ error: 'last_operator' });
    given(history).when({ type: 'RevokeAdminRole', userId: 'usr_a' }).then({ error: 'last_operator' });
  });

  it('an operator may go when another remains; a revoked role is gone from the state', () => {
    const history = [granted('usr_a', 'operator'), granted('usr_b', 'operator')];
    given(history)
      .when({ type: 'RevokeAdminRole', userId: 'usr_a' })
      .then([{ type: 'AdminRoleRevoked', data: { userId: 'usr_a', previousRole: 'operator' } }]);
    const state = given(history).when({ type: 'RevokeAdminRole', userId: 'usr_a' }).thenState();
    expect([...state]).toEqual([['usr_b', 'operator']]);
    given([...history, { type: 'AdminRoleRevoked', data: { userId: 'usr_a', previousRole: 'operator' } }])
      .when({ type: 'RevokeAdminRole', userId: 'usr_b' })
      .then({ error: 'last_operator' });
  });

  it('revoking someone who is no admin is refused', () => {
    given([granted('usr_a', 'operator')])
      .when({ type: 'RevokeAdminRole', userId: 'usr_x' })
      .then({ error: 'admin_not_found' });
  });
});

describe('which /admin calls a role reaches', () => {
  const cases: [string, string, { operator: boolean; finance: boolean; compliance: boolean }][] = [
    ['GET', '/admin/finance/journal', { operator: true, finance: true, compliance: false }],
    ['GET', '/admin/finance/verification', { operator: true, finance: true, compliance: false }],
    ['GET', '/admin/accounts/acct_1/statement', { operator: true, finance: true, compliance: false }],
    ['GET', '/admin/compliance/exports/acct_1', { operator: false, finance: false, compliance: true }],
    ['GET', '/admin/audit', { operator: false, finance: false, compliance: true }],
    ['GET', '/admin/accounts', { operator: true, finance: false, compliance: true }],
    ['POST', '/admin/accounts/acct_1/suspend', { operator: true, finance: false, compliance: false }],
    ['GET', '/admin/admin-users', { operator: true, finance: false, compliance: false }],
    ['DELETE', '/admin/admin-users/usr_1', { operator: true, finance: false, compliance: false }],
  ];
  it.each(cases)('%s %s', (method, path, expected) => {
    expect({
      operator: adminRoleAllows('operator', method, path),
      finance: adminRoleAllows('finance', method, path),
      compliance: adminRoleAllows('compliance', method, path),
    }).toEqual(expected);
  });
});
