// Package usagecloudeventsexporter is the usage_cloudevents exporter: it
// sends the tenant_usage receiver's records to a billing system as
// CloudEvents in the JSON batch shape OpenMeter ingests
// (POST /api/v1/events, application/cloudevents-batch+json), one event per
// record with the record's id, through the collector's queue (persistent
// with a storage extension) and retries. See README.md.
package usagecloudeventsexporter
