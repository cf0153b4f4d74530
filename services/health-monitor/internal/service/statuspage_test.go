package service_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/testinfra"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/domain"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/ports"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/service"
)

const chromiumPath = "/usr/bin/chromium"

// browser starts headless chromium and returns a browser tab context.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		testinfra.Unavailable(t, "%s is missing (Debian package chromium)", chromiumPath)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	return ctx
}

func TestStatusPageShowsStateChangesLiveInBrowser(t *testing.T) {
	ctx := browser(t)
	svc := startHealthServer(t)
	cfg := testConfig(t)
	cfg.CanaryEnabled = false
	cfg.Services = []service.Target{{Name: "web", Addr: svc.Addr}}
	hm, _ := newHealthMonitor(t, cfg)
	st := hm.Monitor.RunCycle(t.Context())
	c, _ := component(st, "service:web")
	require.Equal(t, domain.StatusHealthy, c.Status, c.Detail)

	mux := http.NewServeMux()
	ports.NewStatusHandler(hm.Hub, logger(t)).Register(mux.Handle)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(srv.URL+"/status"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-component="service:web"][data-status="HEALTHY"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#overall[data-status="HEALTHY"]`)),
	))
	// A marker that a reload would wipe out.
	marker, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.loadedOnce = "yes"; window.loadedOnce`))
	require.NoError(t, err)
	require.Equal(t, "yes", marker)

	// The service dies; the next cycle reports it unhealthy, the one after raises an alert.
	svc.Kill()
	hm.Monitor.RunCycle(t.Context())
	require.NoError(t, chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.CSS(`tr[data-component="service:web"][data-status="UNHEALTHY"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#overall[data-status="UNHEALTHY"]`)),
	))
	hm.Monitor.RunCycle(t.Context())
	require.NoError(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`tr[data-alert="service:web"]`))))
	alertText, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`tr[data-alert="service:web"]`)))
	require.NoError(t, err)
	marker, err = chromedp.Run(ctx, chromedp.Evaluate[string](`window.loadedOnce || "reloaded"`))
	require.NoError(t, err)
	require.Contains(t, alertText, "CRITICAL")
	require.Equal(t, "yes", marker, "the page changed without a reload")
}
