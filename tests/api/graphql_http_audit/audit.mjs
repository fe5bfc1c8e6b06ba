// Runs the GraphQL-over-HTTP server audit of graphql-http (the spec's reference
// implementation) against a running instance, and prints one JSON line per check:
// {"id", "name", "status", "reason"}, status "ok", or "notice" (a MAY not met), "warn" (a
// SHOULD) or "error" (a MUST). Exits 1 unless every check is "ok".
//
//   node tests/api/graphql_http_audit/audit.mjs http://127.0.0.1:8000/graphql
import { auditServer } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node audit.mjs <url of /graphql>');
  process.exit(2);
}

const results = await auditServer({ url, fetchFn: fetch });
let failed = 0;
for (const result of results) {
  const line = { id: result.id, name: result.name, status: result.status };
  if (result.status !== 'ok') {
    failed += 1;
    line.reason = result.reason;
    line.responseStatus = result.response.status;
    line.responseBody = await result.response.text().catch(() => null);
  }
  console.log(JSON.stringify(line));
}
process.exit(failed === 0 ? 0 : 1);
