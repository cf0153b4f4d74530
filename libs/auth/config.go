package auth

import (
	"fmt"

	"github.com/cosmic-horizons/fleet/libs/envconf"
)

// Environment variables read by LoadConfig. Every service with a gRPC API
// reads the same ones, so one shared secret or JWKS serves the whole fleet.
const (
	// EnvHS256Secret is the shared HS256 secret (at least 32 bytes);
	// EnvHS256SecretFile names a file holding it instead.
	EnvHS256Secret     = "AUTH_HS256_SECRET"
	EnvHS256SecretFile = "AUTH_HS256_SECRET_FILE"
	// EnvJWKSFile and EnvJWKSURL name the JWKS document of the RS256 keys.
	EnvJWKSFile = "AUTH_JWKS_FILE"
	EnvJWKSURL  = "AUTH_JWKS_URL"
	// EnvJWKSRefresh is how often the JWKS is re-read (a Go duration).
	EnvJWKSRefresh = "AUTH_JWKS_REFRESH"
	// EnvIssuer and EnvAudience, when set, must match the iss and aud claims.
	EnvIssuer   = "AUTH_ISSUER"
	EnvAudience = "AUTH_AUDIENCE"
	// EnvAdminRoles lists the roles granting admin, comma separated
	// (default admin).
	EnvAdminRoles = "AUTH_ADMIN_ROLES"
	// EnvDisabled=true turns authentication off. For development only: every
	// call is then admitted as DevPrincipal, an admin.
	EnvDisabled = "AUTH_DISABLED"
)

// LoadConfig reads the authentication settings through lookup (a service's
// environment lookup) over DefaultConfig and validates them. Without any key
// source and without AUTH_DISABLED=true it fails with an error naming the
// variables to set.
func LoadConfig(lookup func(key string) (string, bool)) (Config, error) {
	c := DefaultConfig()
	if err := envconf.Load(&c, lookup); err != nil {
		return Config{}, fmt.Errorf("auth config: %w", err)
	}
	if err := c.Validate(); err != nil {
		if !c.Disabled && c.HS256Secret == "" && c.JWKSFile == "" && c.JWKSURL == "" {
			return Config{}, fmt.Errorf("%w: set %s (or %s), %s or %s; for development only, %s=true turns authentication off",
				err, EnvHS256Secret, EnvHS256SecretFile, EnvJWKSFile, EnvJWKSURL, EnvDisabled)
		}
		return Config{}, err
	}
	return c, nil
}
