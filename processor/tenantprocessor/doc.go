// Package tenantprocessor provides the tenant processor. In agent mode it
// stamps the VM's tenant id (from a static value, an environment variable, a
// file or an instance-metadata URL) and further instance attributes on every
// resource. In gateway mode it takes the tenant only from the authenticated
// identity (the tenant_auth extension's auth data) and overwrites whatever the
// payload claimed, counting or rejecting payloads that claimed another tenant;
// it also stamps the VM's identity from the same auth data, renames customer
// metrics under the provider's reserved prefixes and removes data points
// timestamped outside a window around its clock, so that nothing a payload
// says decides a bill.
package tenantprocessor // import "github.com/otelcol-gpu/otelcol-gpu/processor/tenantprocessor"
