import { accountDecider } from '../../../../domain/account/decider';
import { deciderSpec } from '../decider-spec';
import { cmd, ev, opened } from './fixtures';

const given = deciderSpec(accountDecider());
const closed = ev('AccountClosed', { reason: 'customer_request' });

describe('CorrectPersonalData', () => {
  it('records the new ciphertexts; a field not given stays unchanged (null)', () =>
    given([opened])
      .when(cmd('CorrectPersonalData', { emailCiphertext: 'enc:new-email' }))
      .then([ev('PersonalDataCorrected', { displayNameCiphertext: null, emailCiphertext: 'enc:new-email' })]));
  it('corrects both fields at once', () =>
    given([opened])
      .when(cmd('CorrectPersonalData', { displayNameCiphertext: 'enc:n', emailCiphertext: 'enc:e' }))
      .then([ev('PersonalDataCorrected', { displayNameCiphertext: 'enc:n', emailCiphertext: 'enc:e' })]));
  it('a closed account whose data is still held may be corrected', () =>
    given([opened, closed])
      .when(cmd('CorrectPersonalData', { displayNameCiphertext: 'enc:n' }))
      .then([ev('PersonalDataCorrected', { displayNameCiphertext: 'enc:n', emailCiphertext: null })]));
  it('nothing_to_correct', () => given([opened]).when(cmd('CorrectPersonalData', {})).then({ error: 'nothing_to_correct' }));
  it('personal_data_already_erased: nothing is stored for an erased person again', () =>
    given([opened, closed, ev('PersonalDataErased', {})])
      .when(cmd('CorrectPersonalData', { emailCiphertext: 'enc:e' }))
      .then({ error: 'personal_data_already_erased' }));
  it('account_not_open', () =>
    given([])
      .when(cmd('CorrectPersonalData', { emailCiphertext: 'enc:e' }))
      .then({ error: 'account_not_open' }));
  it('changes nothing the decider keeps (no personal data in state)', () => {
    const decider = accountDecider();
    const before = decider.evolve(decider.initialState(), opened);
    const after = given([opened])
      .when(cmd('CorrectPersonalData', { emailCiphertext: 'enc:e' }))
      .thenState();
    expect(after).toEqual(before);
  });
});
