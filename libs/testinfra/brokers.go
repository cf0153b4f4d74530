// Package testinfra gives integration tests the addresses of the real brokers
// they run against.
//
// Addresses come from the environment (KAFKA_BROKERS, AMQP_URL), as printed by
// `tools/stack/stack.sh env`. When an address is missing and a Docker engine is
// reachable, the broker is started with testcontainers-go for the duration of
// the test binary. Otherwise the test is skipped, except under CI=true, where
// a missing broker fails the test: CI never passes by skipping.
package testinfra

import (
	"os"
	"strings"
	"testing"
)

// CI reports whether the tests run in CI, where nothing may be skipped.
func CI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1" || v == "yes"
}

// Unavailable skips t because a real component is missing, or fails it under CI.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if CI() {
		t.Fatalf("CI=true and a required component is missing: "+format, args...)
	}
	t.Skipf("component missing (set it up with `make up`): "+format, args...)
}
