package service

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/cosmic-horizons/fleet/libs/auth"
)

// jwksTimeout bounds each fetch of a JWKS URL.
const jwksTimeout = 10 * time.Second

// AuthOptions returns the runtime option that installs the JWT interceptors
// of cfg (libs/auth) on the gRPC server: every call needs a valid token but
// health checks and reflection. A service returns it from its PrepareFunc.
func AuthOptions(ctx context.Context, cfg auth.Config, logger *slog.Logger) ([]Option, error) {
	icpt, err := auth.NewServerInterceptors(ctx, cfg, &http.Client{Timeout: jwksTimeout}, logger)
	if err != nil {
		return nil, err
	}
	return []Option{WithGRPCServerOptions(icpt.ServerOptions()...)}, nil
}
