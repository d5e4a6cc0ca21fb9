package credentials

import (
	"errors"
	"fmt"
	"maps"
)

// What a VM's credential may say about the VM. The customer is root inside
// the VM and controls every byte its agent sends, so who a VM is and how
// many GPUs it has come from here (written by the provider at
// provisioning), never from the payload: the gateway stamps the VM's
// identity on its data, and the usage job counts VMs and bills GPUs by it.

// Limits of the VM fields.
const (
	// MaxInstanceIDLen bounds instance_id (cloud instance ids, UUIDs and
	// "zone:id" forms fit).
	MaxInstanceIDLen = 128
	// MaxGPUs bounds gpus: far above any machine, low enough that a typo
	// (a serial number in the wrong column) is caught.
	MaxGPUs = 1024
)

// Instance is one VM as the provider describes it.
type Instance struct {
	Tenant string
	// GPUs is how many GPUs the provider gave the VM, when GPUsKnown.
	// Unknown (no gpus in the file) is distinct from 0.
	GPUs      int
	GPUsKnown bool
}

// VM is the identity of the VM that holds the credential, as the gateway
// stamps it on the VM's data: the provider's instance id, or the
// credential's own id where the file gives none (one token per VM).
func (c *Credential) VM() string {
	if c.InstanceID != "" {
		return c.InstanceID
	}
	return c.ID
}

// Instances is every VM of the file's ingest credentials, keyed by VM():
// the identity the gateway stamps. Several credentials of one VM (a token
// and its successor) are one entry. The map is the caller's.
func (s *Set) Instances() map[string]Instance {
	return maps.Clone(s.instances)
}

// vmFields are an entry's checked VM fields.
type vmFields struct {
	instanceID string
	gpus       int
	gpusKnown  bool
}

// parseVM checks an entry's instance_id and gpus.
func parseVM(e entry, scope Scope) (vmFields, []error) {
	var v vmFields
	var errs []error
	if e.InstanceID != nil {
		if err := validInstanceID(*e.InstanceID); err != nil {
			errs = append(errs, fmt.Errorf("instance_id: %w", err))
		}
		v.instanceID = *e.InstanceID
	}
	if e.GPUs != nil {
		n, ok := e.GPUs.(int)
		if !ok || n < 0 || n > MaxGPUs {
			errs = append(errs, fmt.Errorf("gpus: must be an integer from 0 to %d, got %v", MaxGPUs, e.GPUs))
		}
		v.gpus, v.gpusKnown = n, true
	}
	if scope != ScopeIngest && (e.InstanceID != nil || e.GPUs != nil) {
		errs = append(errs, errors.New("instance_id, gpus: only an ingest credential (a VM's token) describes a VM"))
	}
	return v, errs
}

// validInstanceID: 1 to 128 of [A-Za-z0-9._:-]. It becomes an attribute
// value, a label value in the store and a key of usage records, so nothing
// that would need escaping anywhere.
func validInstanceID(id string) error {
	if id == "" || len(id) > MaxInstanceIDLen {
		return fmt.Errorf("%q: must be 1 to %d characters long, is %d", id, MaxInstanceIDLen, len(id))
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return fmt.Errorf("%q: character %q at position %d is not allowed (letters, digits, '.', '_', ':' and '-')", id, c, i)
		}
	}
	return nil
}

// vmTable gathers the ingest credentials by VM while the file is read.
type vmTable map[string]*Credential

// add records c's VM, or says why it contradicts another credential of the
// same VM: a VM belongs to one tenant and has one number of GPUs, whichever
// of its tokens sent the data.
func (t vmTable) add(c *Credential) error {
	vm := c.VM()
	first, seen := t[vm]
	if !seen {
		t[vm] = c
		return nil
	}
	if first.Tenant == c.Tenant && first.GPUs == c.GPUs && first.GPUsKnown == c.GPUsKnown {
		return nil
	}
	what := fmt.Sprintf("instance_id %q", vm)
	if c.InstanceID == "" {
		what = fmt.Sprintf("VM %q (the id; no instance_id given)", vm)
	}
	return fmt.Errorf("%s: id %q names the same VM with %s, this entry says %s; the credentials of one VM must agree on tenant and gpus",
		what, first.ID, describeVM(first), describeVM(c))
}

func describeVM(c *Credential) string {
	gpus := "unknown"
	if c.GPUsKnown {
		gpus = fmt.Sprint(c.GPUs)
	}
	return fmt.Sprintf("tenant %q and gpus %s", c.Tenant, gpus)
}

func (t vmTable) instances() map[string]Instance {
	out := make(map[string]Instance, len(t))
	for vm, c := range t {
		out[vm] = Instance{Tenant: c.Tenant, GPUs: c.GPUs, GPUsKnown: c.GPUsKnown}
	}
	return out
}
