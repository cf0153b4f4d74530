package inbox_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if url := os.Getenv(envCrashURL); url != "" {
		// A crash-test child: it applies events until it is killed.
		runCrashChild(url)
		return
	}
	goleak.VerifyTestMain(m)
}
