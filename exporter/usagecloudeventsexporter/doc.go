// Package usagecloudeventsexporter is the usage_cloudevents exporter: it
// sends the tenant_usage receiver's records to a billing system as
// CloudEvents in the JSON batch shape OpenMeter ingests
// (POST /api/v1/events, application/cloudevents-batch+json), one event per
// record with the record's id, in bounded batches, through the collector's
// queue (persistent with a storage extension) and retries. A batch the
// billing system refuses is bisected down to the event it refuses, which
// goes to a dead-letter file; a storage extension binds each id to the
// digest of the one value sent for it. See README.md.
package usagecloudeventsexporter
