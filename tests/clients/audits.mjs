// graphql-http's server audits (the GraphQL-over-HTTP spec's conformance list) against
// the running service. Prints one JSON line: counts and every audit that did not pass.
import { auditServer } from 'graphql-http';

const url = process.env.PORTAL_URL + '/graphql';
const results = await auditServer({ url });
const counts = { ok: 0, notice: 0, warn: 0, error: 0 };
const failed = [];
for (const r of results) {
  counts[r.status] += 1;
  if (r.status !== 'ok') failed.push({ id: r.id, name: r.name, status: r.status, reason: r.reason });
}
console.log(JSON.stringify({ total: results.length, counts, failed }));
