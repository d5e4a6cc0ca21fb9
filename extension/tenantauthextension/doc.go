// Package tenantauthextension provides the tenant_auth server authenticator:
// it maps the bearer token of each OTLP request to the tenant that owns it,
// using a credentials file of SHA-256 token hashes that is re-read while the
// gateway runs, and puts the tenant, the credential id and the VM's identity
// into the request's auth data (client.Info.Auth) for the tenant processor.
package tenantauthextension // import "github.com/otelcol-gpu/otelcol-gpu/extension/tenantauthextension"
