package tenantusagereceiver

import (
	"sync"

	"go.uber.org/zap"

	"github.com/otelcol-gpu/otelcol-gpu/internal/usage"
)

// provisioning reads the VMs the provider provisioned from the gateways'
// credentials file: each ingest credential's VM identity (instance_id, or
// the credential id), its tenant and, where the file says, its GPUs. It is
// read again for every computation; a file that stops parsing keeps the
// last good one, loudly.
type provisioning struct {
	path   string
	logger *zap.Logger

	mu   sync.Mutex
	last map[string]usage.VM
}

func (p *provisioning) read() (map[string]usage.VM, error) {
	vms, err := usage.ReadProvisioning(p.path)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.last = vms
	p.mu.Unlock()
	return vms, nil
}

// vms is usage.Source's Provisioning.
func (p *provisioning) vms() map[string]usage.VM {
	vms, err := p.read()
	if err == nil {
		return vms
	}
	p.logger.Error("usage: the credentials file cannot be read; computing with the last good copy",
		zap.String("credentials_file", p.path), zap.Error(err))
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}
