// Package tenantqueryextension provides the tenant_query extension: the
// customers' way in. On its own listener it serves a Prometheus-compatible
// query API and the store's UI (vmui), each for the one tenant whose read
// key the request carries. It forwards only an allowlist of read endpoints,
// removes every parameter a client sent that could change the scope, and
// has the store enforce the tenant (VictoriaMetrics extra_label, the
// account in a cluster's path, or X-Scope-OrgID), with per-tenant limits,
// an audit line per query and, for the read meters, a usage event per
// answered query kept on disk before the answer goes out.
package tenantqueryextension // import "github.com/otelcol-gpu/otelcol-gpu/extension/tenantqueryextension"
