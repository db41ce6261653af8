import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { api, del, get } from '../api.js';
import { Field, Loading, Message, Select, When, useAction, useLoad } from '../ui.js';

const ROLES = [
  { value: 'operator', label: 'operator' },
  { value: 'finance', label: 'finance' },
  { value: 'compliance', label: 'compliance' },
];

/** For operators: who holds which operator role; add, re-role, remove (the last operator stays). */
export function AdminUsersPage({ session }) {
  const list = useLoad(() => get('/admin/admin-users'), []);
  const action = useAction();
  const [form, setForm] = useState({ email: '', role: 'finance', password: '' });
  const add = async (event) => {
    event.preventDefault();
    const body = { email: form.email.trim(), role: form.role, ...(form.password ? { password: form.password } : {}) };
    const done = await action.run(() => api('POST', '/admin/admin-users', body), `${body.email} is now ${body.role}.`);
    setForm({ ...form, password: '' });
    if (done) void list.reload();
  };
  const change = async (user, role) => {
    if (await action.run(() => api('PATCH', `/admin/admin-users/${user.user_id}`, { role }), `${user.email ?? user.user_id} is now ${role}.`))
      void list.reload();
  };
  const remove = async (user) => {
    if (await action.run(() => del(`/admin/admin-users/${user.user_id}`), `${user.email ?? user.user_id} is no admin any more.`)) void list.reload();
  };
  return html`
    <${Message} message=${action.message} />
    <${Loading} state=${list}>${({ data }) => html`
      <table id="admin-users-table">
        <thead><tr><th scope="col">Email</th><th scope="col">Role</th><th scope="col">Since</th><th scope="col">Two-factor</th><th scope="col">Actions</th></tr></thead>
        <tbody>${data.map(
          (u) => html`<tr key=${u.user_id}>
            <td>${u.email ?? '(erased)'}${u.user_id === session.user_id ? ' (you)' : ''}</td>
            <td><select aria-label=${`Role of ${u.email ?? u.user_id}`} value=${u.role} onChange=${(e) => change(u, e.currentTarget.value)}>
              ${ROLES.map((r) => html`<option value=${r.value}>${r.label}</option>`)}
            </select></td>
            <td><${When} at=${u.granted_at} /></td><td>${u.two_factor_enabled ? 'on' : 'off'}</td>
            <td><button type="button" class="secondary" onClick=${() => remove(u)}>Remove</button></td>
          </tr>`,
        )}</tbody>
      </table>`}<//>
    <section aria-labelledby="add-admin-heading">
      <h2 id="add-admin-heading">Add an admin user</h2>
      <form onSubmit=${add}>
        <${Field} label="Email" id="admin-email" type="email" required value=${form.email} onInput=${(e) => setForm({ ...form, email: e.currentTarget.value })} />
        <${Select} label="Role" id="admin-role" options=${ROLES} value=${form.role} onChange=${(e) => setForm({ ...form, role: e.currentTarget.value })} />
        <${Field} label="Password (for a new user)" id="admin-password" type="password" autocomplete="new-password" minlength="12" value=${form.password} onInput=${(e) => setForm({ ...form, password: e.currentTarget.value })} hint="An existing user keeps their own password." />
        <button type="submit" disabled=${action.busy}>Add</button>
      </form>
    </section>`;
}
