package app

import (
	"sync"

	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/domain"
)

// Hub holds the latest fleet status and tells watchers when a new one is
// published. It is safe for concurrent use.
type Hub struct {
	mu      sync.Mutex
	status  domain.FleetStatus
	changed chan struct{}
}

// NewHub returns a hub whose status is unknown until the first Publish.
func NewHub() *Hub {
	return &Hub{
		status:  domain.FleetStatus{Overall: domain.StatusUnknown},
		changed: make(chan struct{}),
	}
}

// Current returns the latest status and a channel closed when a newer one is
// published. Watchers loop: read, wait on the channel, read again.
func (h *Hub) Current() (domain.FleetStatus, <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.status, h.changed
}

// Publish makes s the latest status and wakes every watcher. The hub keeps s
// as it is: callers must not modify its slices afterwards.
func (h *Hub) Publish(s domain.FleetStatus) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.status = s
	close(h.changed)
	h.changed = make(chan struct{})
}
