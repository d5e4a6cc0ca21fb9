package tenantprocessor

import "go.opentelemetry.io/collector/pdata/pmetric"

// The provider writes the usage series (usage.*) into each tenant's own
// data, so customers see what they are billed. A customer metric under
// that prefix would sit beside them, indistinguishable, so the gateway
// renames it (usage.data_points -> customer.usage.data_points): it is
// stored and billed like any other metric, and nothing a customer writes
// appears as a usage series.
//
// Prefixes are compared the way a store that makes names
// Prometheus-compatible sees them (VictoriaMetrics -usePromCompatibleNaming,
// -opentelemetry.usePrometheusNaming): case-insensitive, and any character
// other than a letter or digit like any other. So usage_data_points and
// Usage.Data_Points are renamed too: the gateway cannot tell how the store
// is flagged.

// reservedNames renames the metrics under a reserved prefix.
type reservedNames struct {
	prefixes []likeName
	rename   string
}

func newReservedNames(cfg *Config) reservedNames {
	r := reservedNames{rename: cfg.ReservedRenamePrefix}
	for _, p := range cfg.ReservedPrefixes {
		r.prefixes = append(r.prefixes, newLikeName(p))
	}
	return r
}

// renameTally is what one request's renames were: how many, and the first
// original name for the log.
type renameTally struct {
	n       int
	example string
}

// apply renames m when its name is reserved. Only names are read; a rename
// allocates the new name.
func (r *reservedNames) apply(m pmetric.Metric, t *renameTally) {
	name := m.Name()
	for _, p := range r.prefixes {
		if len(name) >= len(p) && p.matches(name[:len(p)]) {
			m.SetName(r.rename + name)
			if t.n == 0 {
				t.example = name
			}
			t.n++
			return
		}
	}
}
