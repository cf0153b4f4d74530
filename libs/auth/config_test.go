package auth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cosmic-horizons/fleet/libs/auth"
	"github.com/cosmic-horizons/fleet/libs/envconf"
)

func lookupOf(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	secretFile := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(secretFile, []byte(secret+"\n"), 0o600))
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
		check   func(t *testing.T, c auth.Config)
	}{
		{name: "HS256 secret", env: map[string]string{auth.EnvHS256Secret: secret}, check: func(t *testing.T, c auth.Config) {
			require.Equal(t, secret, string(c.HS256Secret))
			require.Equal(t, []string{"admin"}, c.AdminRoles)
			require.False(t, c.Disabled)
		}},
		{name: "secret from a file", env: map[string]string{auth.EnvHS256SecretFile: secretFile}, check: func(t *testing.T, c auth.Config) {
			require.Equal(t, secret, string(c.HS256Secret))
		}},
		{name: "JWKS, issuer, audience, roles, refresh", env: map[string]string{
			auth.EnvJWKSURL: "https://idp.example/jwks", auth.EnvIssuer: "idp", auth.EnvAudience: "fleet",
			auth.EnvAdminRoles: "ops, admin", auth.EnvJWKSRefresh: "1m",
		}, check: func(t *testing.T, c auth.Config) {
			require.Equal(t, "https://idp.example/jwks", c.JWKSURL)
			require.Equal(t, "idp", c.Issuer)
			require.Equal(t, "fleet", c.Audience)
			require.Equal(t, []string{"ops", "admin"}, c.AdminRoles)
			require.Equal(t, time.Minute, c.JWKSRefresh)
		}},
		{name: "disabled explicitly", env: map[string]string{auth.EnvDisabled: "true"}, check: func(t *testing.T, c auth.Config) {
			require.True(t, c.Disabled)
		}},
		{name: "nothing set refuses and names the variables", env: map[string]string{}, wantErr: "AUTH_DISABLED=true"},
		{name: "disabled false is not disabled", env: map[string]string{auth.EnvDisabled: "false"}, wantErr: "AUTH_HS256_SECRET"},
		{name: "disabled and a secret", env: map[string]string{auth.EnvDisabled: "true", auth.EnvHS256Secret: secret}, wantErr: "disabled but a key source is set"},
		{name: "disabled not a boolean", env: map[string]string{auth.EnvDisabled: "yes please", auth.EnvHS256Secret: secret}, wantErr: "AUTH_DISABLED"},
		{name: "secret and secret file", env: map[string]string{auth.EnvHS256Secret: secret, auth.EnvHS256SecretFile: secretFile}, wantErr: "not both"},
		{name: "missing secret file", env: map[string]string{auth.EnvHS256SecretFile: filepath.Join(t.TempDir(), "none")}, wantErr: "AUTH_HS256_SECRET_FILE"},
		{name: "short secret", env: map[string]string{auth.EnvHS256Secret: "short"}, wantErr: "32 bytes"},
		{name: "bad refresh", env: map[string]string{auth.EnvJWKSFile: "x", auth.EnvJWKSRefresh: "often"}, wantErr: "AUTH_JWKS_REFRESH"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := auth.LoadConfig(lookupOf(tt.env))
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				require.NotContains(t, err.Error(), secret, "the secret never appears in an error")
				return
			}
			require.NoError(t, err)
			tt.check(t, c)
		})
	}
}

func TestDisabledInterceptorsAdmitDevPrincipal(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	ic, err := auth.NewServerInterceptors(context.Background(), auth.Config{Disabled: true}, nil, logger(&logs))
	require.NoError(t, err)
	require.Contains(t, logs.String(), `"level":"WARN"`)
	require.Contains(t, logs.String(), "AUTHENTICATION IS DISABLED")

	var got auth.Principal
	_, err = ic.Unary(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/fleet.audit.v1.AuditService/Query"},
		func(ctx context.Context, _ any) (any, error) {
			p, err := auth.RequireAdmin(ctx)
			got = p
			return nil, err
		})
	require.NoError(t, err)
	require.Equal(t, auth.DevPrincipal(), got)

	_, err = auth.NewServerInterceptors(context.Background(), auth.Config{Disabled: true, HS256Secret: secret}, nil, logger(&logs))
	require.Error(t, err)
}

func TestNewServerInterceptorsVerifyTokens(t *testing.T) {
	t.Parallel()
	cfg := auth.DefaultConfig()
	cfg.HS256Secret = secret
	ic, err := auth.NewServerInterceptors(context.Background(), cfg, nil, logger(&bytes.Buffer{}))
	require.NoError(t, err)
	_, err = ic.Unary(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/fleet.job.v1.JobService/GetJob"},
		func(context.Context, any) (any, error) { return nil, nil })
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	_, err = auth.NewServerInterceptors(context.Background(), auth.Config{}, nil, logger(&bytes.Buffer{}))
	require.Error(t, err)
}

func TestCallerAndRequireAdmin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		ctx        context.Context
		wantCaller codes.Code
		wantAdmin  codes.Code
	}{
		{name: "no principal", ctx: context.Background(), wantCaller: codes.Unauthenticated, wantAdmin: codes.Unauthenticated},
		{name: "empty subject", ctx: auth.WithPrincipal(context.Background(), auth.Principal{}), wantCaller: codes.Unauthenticated, wantAdmin: codes.Unauthenticated},
		{name: "user", ctx: auth.WithPrincipal(context.Background(), auth.Principal{UserID: "ada"}), wantAdmin: codes.PermissionDenied},
		{name: "admin", ctx: auth.WithPrincipal(context.Background(), auth.Principal{UserID: "root", Admin: true})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := auth.Caller(tt.ctx)
			require.Equal(t, tt.wantCaller, status.Code(err))
			_, err = auth.RequireAdmin(tt.ctx)
			require.Equal(t, tt.wantAdmin, status.Code(err))
		})
	}
}

func TestLoadConfigFromEnvTags(t *testing.T) {
	t.Parallel()
	env := map[string]string{"AUTH_HS256_SECRET": " 0123456789abcdef0123456789abcdef ", "AUTH_ISSUER": "fleet",
		"AUTH_ADMIN_ROLES": " ops, ,admin ", "AUTH_JWKS_REFRESH": "5m"}
	c, err := auth.LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	require.NoError(t, err)
	require.EqualValues(t, "0123456789abcdef0123456789abcdef", c.HS256Secret)
	require.Equal(t, "fleet", c.Issuer)
	require.Equal(t, []string{"ops", "admin"}, c.AdminRoles)
	require.Equal(t, 5*time.Minute, c.JWKSRefresh)

	env["AUTH_JWKS_REFRESH"], env["AUTH_DISABLED"] = "later", "maybe"
	_, err = auth.LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	require.ErrorContains(t, err, `AUTH_JWKS_REFRESH="later"`)
	require.ErrorContains(t, err, `AUTH_DISABLED="maybe"`)
}

// The HS256 secret read from AUTH_HS256_SECRET_FILE is hidden on the
// startup line like one given directly.
func TestLoadConfigSecretFileRedacted(t *testing.T) {
	t.Parallel()
	secretFile := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(secretFile, []byte(secret+"\n"), 0o600))
	c, err := auth.LoadConfig(lookupOf(map[string]string{auth.EnvHS256SecretFile: secretFile}))
	require.NoError(t, err)
	require.EqualValues(t, secret, c.HS256Secret)
	line, err := json.Marshal(envconf.Redact(&c))
	require.NoError(t, err)
	require.NotContains(t, string(line), secret)
	require.Contains(t, string(line), `"HS256Secret":"`+envconf.Hidden+`"`)
}
