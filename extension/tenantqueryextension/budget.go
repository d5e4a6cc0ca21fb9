package tenantqueryextension

import (
	"sync"
)

// answerBudget bounds the store answers held in this process: each tenant's
// at most perTenant bytes, all tenants' at most total. An answer takes its
// bytes as it is read and gives them back once it has been written to the
// client; one that would go over either bound fails at once (never waits),
// so no tenant's large answers can hold memory another tenant's small ones
// need, and what reads add to the process's memory is bounded whatever
// the tenants ask for.
type answerBudget struct {
	perTenant, total int64

	mu     sync.Mutex
	used   int64
	tenant map[string]int64
}

func newAnswerBudget(perTenant, total int64) *answerBudget {
	return &answerBudget{perTenant: perTenant, total: total, tenant: map[string]int64{}}
}

// take reserves n more bytes for tenant; false when either bound would be
// passed (tenantFull says which).
func (b *answerBudget) take(tenant string, n int64) (ok, tenantFull bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.tenant[tenant]
	if t+n > b.perTenant {
		return false, true
	}
	if b.used+n > b.total {
		return false, false
	}
	b.tenant[tenant] = t + n
	b.used += n
	return true, false
}

// give returns n bytes of tenant's.
func (b *answerBudget) give(tenant string, n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	if t := b.tenant[tenant] - n; t > 0 {
		b.tenant[tenant] = t
	} else {
		delete(b.tenant, tenant)
	}
}

// inUse is the bytes held, by tenant and in all.
func (b *answerBudget) inUse(tenant string) (int64, int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.tenant[tenant], b.used
}
