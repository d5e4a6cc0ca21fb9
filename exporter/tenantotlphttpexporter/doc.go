// Package tenantotlphttpexporter provides the tenant_otlp_http exporter: it
// groups data by tenant and sends each tenant's data to the hosted store
// over OTLP/HTTP with its own rendered endpoint and headers, its own queue,
// retry state and rate limit, under global bounds, so that one tenant's
// failing or slow destination never delays another's.
package tenantotlphttpexporter // import "github.com/otelcol-gpu/otelcol-gpu/exporter/tenantotlphttpexporter"
