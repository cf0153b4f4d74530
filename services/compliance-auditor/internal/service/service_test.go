package service_test

import (
	"path/filepath"
	"testing"

	"github.com/cosmic-horizons/fleet/libs/service/servicetest"
)

func TestBinaryServesAndShutsDownOnSIGTERM(t *testing.T) {
	t.Parallel()
	servicetest.RequireLifecycle(t, "../../cmd/compliance-auditor", map[string]string{
		"DATABASE_URL":  "sqlite:" + filepath.Join(t.TempDir(), "audit.db"),
		"KAFKA_BROKERS": "",
	})
}
