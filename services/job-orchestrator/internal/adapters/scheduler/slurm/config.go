package slurm

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/cosmic-horizons/fleet/libs/telemetry"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultHTTPTimeout = 30 * time.Second
	DefaultPath        = "/usr/local/bin:/usr/bin:/bin"
)

// SupportedVersions are the slurmrestd OpenAPI versions the backend speaks,
// newest first: the ones Slurm 24.11 serves (v0.0.38 and older were removed
// upstream in 24.05).
var SupportedVersions = []string{"v0.0.42", "v0.0.41", "v0.0.40"}

// Config configures the Slurm backend.
type Config struct {
	// BaseURL of slurmrestd: "http://127.0.0.1:6820" or
	// "unix:///path/to/slurmrestd.sock".
	BaseURL string
	// UserName is sent as X-SLURM-USER-NAME; required with a token.
	UserName string
	// Token is a slurmrestd JWT. Either Token or TokenFile is required over
	// HTTP; over a unix socket with rest_auth/local both may be empty.
	Token telemetry.Secret
	// TokenFile holds the JWT (optionally as SLURM_JWT=<token>); it is re-read
	// when it changes.
	TokenFile string
	// APIVersion is the OpenAPI plugin version in the URL path, one of
	// SupportedVersions. Empty: the newest version both slurmrestd (its
	// GET /openapi/v3) and the backend know, chosen at the first request.
	APIVersion string
	// HTTPTimeout bounds each request.
	HTTPTimeout time.Duration
	// Path is the PATH a job gets when its environment has none.
	Path string
	// WrapTransport, when set, wraps the backend's HTTP transport (e.g. to
	// count requests in a benchmark).
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// Logger receives the backend's logs; slog.Default() when nil.
	Logger *slog.Logger
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.HTTPTimeout == 0 {
		c.HTTPTimeout = DefaultHTTPTimeout
	}
	if c.Path == "" {
		c.Path = DefaultPath
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports every invalid field.
func (c Config) Validate() error {
	var errs []error
	u, err := url.Parse(c.BaseURL)
	switch {
	case c.BaseURL == "":
		errs = append(errs, errors.New("BaseURL is required"))
	case err != nil:
		errs = append(errs, fmt.Errorf("BaseURL: %w", err))
	case u.Scheme == "unix":
		if u.Path == "" {
			errs = append(errs, fmt.Errorf("BaseURL %q has no socket path", c.BaseURL))
		}
	case u.Scheme == "http" || u.Scheme == "https":
		if u.Host == "" {
			errs = append(errs, fmt.Errorf("BaseURL %q has no host", c.BaseURL))
		}
		if c.Token == "" && c.TokenFile == "" {
			errs = append(errs, errors.New("Token or TokenFile is required over HTTP"))
		}
	default:
		errs = append(errs, fmt.Errorf("BaseURL scheme %q is not http, https or unix", u.Scheme))
	}
	if c.Token != "" && c.TokenFile != "" {
		errs = append(errs, errors.New("set Token or TokenFile, not both"))
	}
	if (c.Token != "" || c.TokenFile != "") && c.UserName == "" {
		errs = append(errs, errors.New("UserName is required with a token"))
	}
	if c.APIVersion != "" && !slices.Contains(SupportedVersions, c.APIVersion) {
		errs = append(errs, fmt.Errorf("APIVersion %q is not one of %s", c.APIVersion, strings.Join(SupportedVersions, ", ")))
	}
	if c.HTTPTimeout < 0 {
		errs = append(errs, fmt.Errorf("HTTPTimeout %s must not be negative", c.HTTPTimeout))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("slurm scheduler config: %w", err)
	}
	return nil
}
