package tenantqueryextension

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component"
)

// alertsPrefix is where the tenant_alerts extension's tenant API is served.
const alertsPrefix = "/alerting/v1/"

// alertsAPI is what tenant_query needs of the tenant_alerts extension: it
// answers a call for a tenant this listener identified.
type alertsAPI interface {
	ServeTenantAlerts(w http.ResponseWriter, r *http.Request, tenant, keyID string)
}

// findAlerts looks up the extension named by alerts: among the host's.
func findAlerts(host component.Host, name string) (alertsAPI, error) {
	var id component.ID
	if err := id.UnmarshalText([]byte(name)); err != nil {
		return nil, fmt.Errorf("alerts: %w", err)
	}
	ext, ok := host.GetExtensions()[id]
	if !ok {
		return nil, fmt.Errorf("alerts: no extension %q in service.extensions", name)
	}
	api, ok := ext.(alertsAPI)
	if !ok {
		return nil, fmt.Errorf("alerts: extension %q is not a tenant_alerts extension", name)
	}
	return api, nil
}

// serveAlerts admits a call to the alerting API like a query: the read
// key's tenant (a session's changes from this origin only), within the
// tenant's query rate and concurrency.
func (s *queryServer) serveAlerts(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if s.alerts == nil {
		s.tel.refuse(ctx, "", "not_allowed")
		writeAPIError(w, http.StatusNotFound, "not_found", "alerting is not served here (tenant_query.alerts is not set)")
		return
	}
	cred, via, result := s.identify(r)
	if result != authOK {
		s.refuseUnidentified(w, r, "alerting", via, result)
		return
	}
	if via == "session" && r.Method != http.MethodGet && r.Method != http.MethodHead && s.crossOrigin(w, r, "alerting change") {
		return
	}
	s.keyUsed(cred, time.Now())
	release, stopClock, refused := s.limits.admit(ctx, cred.Tenant)
	if refused != nil {
		s.tel.refuse(ctx, cred.Tenant, refused.reason)
		writeAPIError(w, http.StatusTooManyRequests, "too_many_requests", "over this tenant's request limits; retry later")
		return
	}
	defer release()
	defer stopClock()
	if strings.Contains(r.URL.EscapedPath(), "//") {
		writeAPIError(w, http.StatusNotFound, "not_found", "not found")
		return
	}
	s.alerts.ServeTenantAlerts(w, r, cred.Tenant, cred.ID)
}

// Dependencies has the collector start the tenant_alerts extension before
// this one (and stop it after): the listener must not pass a call to an
// extension that has not started.
func (s *queryServer) Dependencies() []component.ID {
	if s.cfg.Alerts == "" {
		return nil
	}
	var id component.ID
	if id.UnmarshalText([]byte(s.cfg.Alerts)) != nil {
		return nil
	}
	return []component.ID{id}
}
