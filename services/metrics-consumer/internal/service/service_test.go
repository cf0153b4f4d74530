package service_test

import (
	"testing"

	"github.com/cosmic-horizons/fleet/libs/service/servicetest"
)

func TestBinaryServesAndShutsDownOnSIGTERM(t *testing.T) {
	t.Parallel()
	servicetest.RequireLifecycle(t, "../../cmd/metrics-consumer", nil)
}
