// Package tenantusagereceiver is the tenant_usage receiver: every hour, once
// the hour has closed, it computes each tenant's usage (internal/usage) from
// the store after deduplication and from the read path's query records, and
// emits one record per tenant, meter and hour as a metric data point with a
// deterministic record id, into an ordinary pipeline: to the store under the
// tenant's own label, and to a billing system (the usage_cloudevents
// exporter). Its cursor lives in a storage extension, so a restart neither
// skips nor repeats an hour. See README.md.
package tenantusagereceiver
