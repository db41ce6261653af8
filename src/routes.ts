import { mountAccountRoutes } from '../adapters/http/routes/account';
import { mountAdminRoutes } from '../adapters/http/routes/admin';
import { mountAdminUserRoutes } from '../adapters/http/routes/admin-users';
import { mountAutoTopUpRoutes } from '../adapters/http/routes/auto-top-up';
import { mountBillingRoutes } from '../adapters/http/routes/billing';
import { mountDashboardRoutes } from '../adapters/http/dashboard/routes';
import { mountComplianceRoutes } from '../adapters/http/routes/compliance';
import { mountFinanceRoutes } from '../adapters/http/routes/finance';
import { mountKeyLimitRoutes } from '../adapters/http/routes/key-limits';
import { mountNoticeRoutes } from '../adapters/http/routes/notices';
import { mountStatusRoutes } from '../adapters/http/routes/status';
import type { RouteMount } from './gateway';

/**
 * Routers beyond the OpenAI-compatible API, mounted by `npm start`: admin, account, billing,
 * dashboard. Each capability adds its mount here. The dashboard comes first: its sign-in session
 * supplies the Bearer key that the others' authentication reads.
 */
export const standardRoutes: readonly RouteMount[] = [
  mountDashboardRoutes,
  mountAdminRoutes,
  mountAdminUserRoutes,
  mountAccountRoutes,
  mountKeyLimitRoutes,
  mountFinanceRoutes,
  mountComplianceRoutes,
  mountAutoTopUpRoutes,
  mountBillingRoutes,
  mountNoticeRoutes,
  mountStatusRoutes,
];
