package envconf_test

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/envconf"
	"github.com/cosmic-horizons/fleet/libs/telemetry"
)

type tlsBlock struct {
	CAFile string `env:"CA_FILE"`
}

type sample struct {
	Name     string        `env:"NAME"`
	Every    time.Duration `env:"EVERY"`
	Count    int           `env:"COUNT"`
	Ratio    float64       `env:"RATIO"`
	On       bool          `env:"ON"`
	Brokers  []string      `env:"BROKERS"`
	TLS      tlsBlock      `envPrefix:"KAFKA_TLS_"`
	Password string        `env:"PASSWORD"`
	Other    string
}

func lookup(env map[string]string) envconf.Lookup {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

func TestLoad(t *testing.T) {
	t.Parallel()
	defaults := sample{Name: "default", Every: time.Second, Count: 3, Brokers: []string{"a:1"}, Other: "kept"}
	tests := []struct {
		name    string
		env     map[string]string
		want    sample
		wantErr []string
	}{
		{name: "nothing set keeps the defaults", env: map[string]string{}, want: defaults},
		{name: "blank values keep the defaults", env: map[string]string{"NAME": "  ", "EVERY": "", "BROKERS": " "}, want: defaults},
		{name: "values are trimmed, lists split", env: map[string]string{"NAME": " n ", "EVERY": " 2s", "COUNT": "7", "RATIO": "0.5", "ON": "true",
			"BROKERS": " b:1 , ,c:2 ", "KAFKA_TLS_CA_FILE": " /ca.pem "},
			want: sample{Name: "n", Every: 2 * time.Second, Count: 7, Ratio: 0.5, On: true, Brokers: []string{"b:1", "c:2"}, TLS: tlsBlock{CAFile: "/ca.pem"}, Other: "kept"}},
		{name: "bad values name their variables", env: map[string]string{"EVERY": "soon", "COUNT": "many", "ON": "yes please"},
			wantErr: []string{`EVERY="soon": want a duration`, `COUNT="many": want an integer`, `ON="yes please": want true or false`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := defaults
			got.Brokers = append([]string(nil), defaults.Brokers...)
			err := envconf.Load(&got, lookup(tt.env))
			if len(tt.wantErr) > 0 {
				for _, w := range tt.wantErr {
					require.ErrorContains(t, err, w)
				}
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	keys, err := envconf.Keys(&sample{})
	require.NoError(t, err)
	require.Equal(t, []string{"BROKERS", "COUNT", "EVERY", "KAFKA_TLS_CA_FILE", "NAME", "ON", "PASSWORD", "RATIO"}, keys)
}

type inner struct {
	TokenFile string
	APIToken  string
}

type effective struct {
	DatabaseURL string
	DSN         string
	AMQPURL     string
	Password    string
	SigningKey  []byte
	PageKey     telemetry.Secret
	Webhook     string `secret:"true"`
	Brokers     []string
	Interval    time.Duration
	Inner       inner
	Ptr         *inner
	Logger      *slog.Logger
	Hook        func()
	private     string
}

// The startup line shows the effective configuration and none of its secrets.
func TestRedact(t *testing.T) {
	t.Parallel()
	cfg := effective{
		DatabaseURL: "postgres://fleet:s3cret-db@db:5432/fleet?sslmode=disable",
		DSN:         "host=db user=fleet password=s3cret-dsn dbname=fleet",
		AMQPURL:     "amqp://guest:s3cret-amqp@127.0.0.1:5672/",
		Password:    "s3cret-pw",
		SigningKey:  []byte("s3cret-key"),
		PageKey:     telemetry.Secret("s3cret-page"),
		Webhook:     "s3cret-hook",
		Brokers:     []string{"k1:9092", "k2:9092"},
		Interval:    1500 * time.Millisecond,
		Inner:       inner{TokenFile: "/run/secrets/token", APIToken: "s3cret-token"},
		Ptr:         &inner{APIToken: "s3cret-ptr"},
		Logger:      slog.Default(),
		private:     "s3cret-private",
	}
	got := envconf.Redact(&cfg)
	b, err := json.Marshal(got)
	require.NoError(t, err)
	line := string(b)
	require.NotContains(t, line, "s3cret", "no secret in %s", line)
	require.Equal(t, "postgres://fleet:xxxxx@db:5432/fleet?sslmode=disable", got["DatabaseURL"])
	require.Equal(t, "host=db user=fleet password=[REDACTED] dbname=fleet", got["DSN"])
	require.Equal(t, envconf.Hidden, got["Password"])
	require.Equal(t, envconf.Hidden, got["SigningKey"])
	require.Equal(t, envconf.Hidden, got["Webhook"])
	require.Equal(t, []any{"k1:9092", "k2:9092"}, got["Brokers"])
	require.Equal(t, "1.5s", got["Interval"])
	require.Equal(t, map[string]any{"TokenFile": "/run/secrets/token", "APIToken": envconf.Hidden}, got["Inner"])
	require.NotContains(t, got, "Logger")
	require.NotContains(t, got, "Hook")
	require.NotContains(t, got, "private")
	require.True(t, strings.Contains(line, `"PageKey":"[REDACTED]"`), line)
}
