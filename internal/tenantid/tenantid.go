// Package tenantid holds the one tenant-id grammar used everywhere in the
// distribution (credentials file, tenant processor, exporter templates,
// storage names, store labels) and the names under which the tenant travels
// in a request's auth data.
//
// A tenant id is 1 to 63 characters of lowercase letters, digits, '-' and
// '_', starting with a letter or digit. Anything else is rejected with an
// error that names it; ids are never escaped or truncated into something
// that would then collide with another tenant.
package tenantid

import "fmt"

// MaxLen is the longest accepted tenant id (a DNS label's length, so an id
// fits in host names, label values and file names alike).
const MaxLen = 63

// Auth data attribute names set by the tenant_auth extension and read by the
// tenant processor in gateway mode (client.Info.Auth.GetAttribute).
const (
	AuthAttributeTenant     = "tenant"
	AuthAttributeCredential = "credential_id"
	// AuthAttributeInstance is the identity of the VM that holds the
	// credential (the credentials file's instance_id, else the credential
	// id): what the gateway stamps on the VM's data and bills by.
	AuthAttributeInstance = "instance_id"
	// AuthAttributeGPUs is the VM's provisioned GPUs (an int64), absent
	// where the credentials file does not say.
	AuthAttributeGPUs = "gpus"
)

// Validate returns nil when id follows the grammar, else an error naming it.
func Validate(id string) error {
	if id == "" {
		return fmt.Errorf("tenant id is empty")
	}
	if len(id) > MaxLen {
		return fmt.Errorf("tenant id %q is %d characters long, the limit is %d", id, len(id), MaxLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '-' || c == '_') && i > 0:
		default:
			return fmt.Errorf("tenant id %q: character %q at position %d is not allowed (lowercase letters, digits, '-' and '_', starting with a letter or digit)", id, c, i)
		}
	}
	return nil
}
