// Package tenantalertsextension provides the tenant_alerts extension: the
// customers' GPU alerts. It keeps each tenant's alert rules and receivers
// (a default GPU rule pack for every tenant of the credentials file, plus
// the rules and receivers the tenant sets through the read path), writes
// them as vmalert rule files and one Alertmanager configuration, each
// tenant's rule groups scoped by the store (extra_label) and labelled with
// the tenant, and reloads both engines. Alertmanager routes every tenant's
// notifications to this extension's relay, which delivers them to the
// tenant's own endpoints: signed, over https only, never into the
// provider's network, within bounded time and size and a per-tenant rate.
package tenantalertsextension // import "github.com/otelcol-gpu/otelcol-gpu/extension/tenantalertsextension"
