package usage

import (
	"os"

	"github.com/otelcol-gpu/otelcol-gpu/internal/credentials"
)

// ReadProvisioning reads the VMs the provider provisioned from the
// gateways' credentials file: each ingest credential's VM identity (its
// instance_id, or its id), tenant and GPUs, for the VMs whose entry says
// how many GPUs they have.
func ReadProvisioning(path string) (map[string]VM, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	set, err := credentials.Parse(data)
	if err != nil {
		return nil, err
	}
	out := map[string]VM{}
	for id, inst := range set.Instances() {
		if inst.GPUsKnown {
			out[id] = VM{Tenant: inst.Tenant, GPUs: inst.GPUs}
		}
	}
	return out, nil
}
